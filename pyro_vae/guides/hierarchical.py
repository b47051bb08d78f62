"""Guides of the two-layer hierarchical VAE: bottom-up (Burda et al.) and top-down (ladder)."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import Distribution

from ..inputs import check_rows
from ..models.hierarchical import ConditionalNormal
from ..nets import hidden_layers
from ..runtime import FastPyroModule


class BottomUpGuide(FastPyroModule):
    """q(z1, z2 | x) = q(z1 | x) q(z2 | z1), the inference network of Burda et al. (2015)::

        z1 ~ q(z1 | x)  = N(mu_φ(x), diag σ_φ(x)²)     # x -> hidden... -> 2 z1_dim   site "z1"
        z2 ~ q(z2 | z1) = N(mu_φ(z1), diag σ_φ(z1)²)   # z1 -> top_hidden... -> 2 z2_dim  site "z2"

    Point summary (``point(x)``, what ``pyro-vae encode`` writes): z1 = the mean of q(z1 | x),
    z2 = the mean of q(z2 | z1) at that z1. ``posterior(x)`` is q(z1 | x), the code the decoder
    reads.

    Not mean-field in Pyro's sense: the guide samples z1 before z2 and the model z2 before z1,
    so the analytic per-site KL of ``TraceMeanField_ELBO`` would be taken at a z2 that depends
    on z1 (biased); the trainer refuses that objective for this guide.
    """

    mean_field = False

    def __init__(
        self,
        x_dim: int,
        z1_dim: int = 100,
        z2_dim: int = 50,
        hidden: Sequence[int] = (200, 200),
        top_hidden: Sequence[int] = (100, 100),
        activation: str = "elu",
    ) -> None:
        super().__init__()
        self.x_dim, self.z1_dim, self.z2_dim = x_dim, z1_dim, z2_dim
        self.z_dim = z1_dim
        self.q_z1 = ConditionalNormal(x_dim, hidden, z1_dim, activation)
        self.q_z2 = ConditionalNormal(z1_dim, top_hidden, z2_dim, activation)

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z1, z2 | x) encodes data: call guide(x) with x given")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            z1 = pyro.sample("z1", self.q_z1(x))
            return pyro.sample("z2", self.q_z2(z1))

    def posterior(self, x: Tensor) -> Distribution:
        """q(z1 | x)."""
        return self.q_z1(x)

    @torch.no_grad()
    def point(self, x: Tensor) -> dict[str, Tensor]:
        """{"z1": E_q[z1 | x], "z2": E_q[z2 | z1 = that mean]}."""
        z1 = self.q_z1.params(x)[0]
        return {"z1": z1, "z2": self.q_z2.params(z1)[0]}


class LadderGuide(FastPyroModule):
    """Top-down inference of the Ladder VAE (Sønderby et al. 2016) for two layers.

    A deterministic bottom-up pass ``d1 = MLP(x)``, ``d2 = MLP(d1)`` gives estimates
    (mû1, σ̂1) from d1 and (mû2, σ̂2) from d2; then, top-down::

        z2 ~ q(z2 | x)     = N(mû2, diag σ̂2²)                              site "z2"
        z1 ~ q(z1 | z2, x) = N(mu, diag σ²),  σ⁻² = σ̂1⁻² + σp⁻²,          site "z1"
                                              mu = (mû1 σ̂1⁻² + mup σp⁻²) σ²

    where (mup, σp) are the model's own top-down p(z1 | z2): the posterior is the
    precision-weighted merge of the generative top-down prior and the bottom-up estimate. The
    guide reads the model's ``top_down`` network by reference (it is the model's parameter,
    trained and saved once, as the model's).

    Point summary (``point(x)``): z2 = mû2 and z1 = the merged mean at that z2;
    ``posterior(x)`` is q(z1 | z2 = mû2, x).

    The deterministic bottom-up pass has batch norm after each affine layer (``batch_norm``,
    on by default), as Sønderby et al. train it: without it, and without KL warm-up, the
    model's top-down scale shrinks, q(z1 | z2, x) becomes p(z1 | z2) and the ladder ends
    >20 nats behind a one-layer VAE (docs/benchmarks.md). Batch statistics are used in
    training, running averages after ``guide.eval()`` (evaluation, encoding, figures).
    """

    def __init__(
        self,
        x_dim: int,
        top_down: ConditionalNormal,
        z1_dim: int = 100,
        z2_dim: int = 50,
        hidden: Sequence[int] = (200, 200),
        top_hidden: Sequence[int] = (100, 100),
        activation: str = "elu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if not hidden or not top_hidden:
            raise ValueError("the ladder guide needs hidden layers on both levels")
        self.x_dim, self.z1_dim, self.z2_dim = x_dim, z1_dim, z2_dim
        self.z_dim = z1_dim
        object.__setattr__(self, "top_down", top_down)  # the model's: not registered here
        self.d1 = hidden_layers(x_dim, hidden, activation, batch_norm)
        self.d2 = hidden_layers(hidden[-1], top_hidden, activation, batch_norm)
        self.est1 = ConditionalNormal(hidden[-1], (), z1_dim)
        self.est2 = ConditionalNormal(top_hidden[-1], (), z2_dim)

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z1, z2 | x) encodes data: call guide(x) with x given")
        check_rows(x, self.x_dim)
        d1, d2 = self.bottom_up(x)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", self.est2(d2))
            return pyro.sample("z1", self._q_z1(d1, z2))

    def bottom_up(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The deterministic pass (d1, d2). A batch of one datum in training has no batch
        statistics, so it is normalised with the running averages instead."""
        if self.training and x.reshape(-1, x.shape[-1]).shape[0] == 1:
            self.d1.eval(), self.d2.eval()
            try:
                d1 = self.d1(x)
                return d1, self.d2(d1)
            finally:
                self.d1.train(), self.d2.train()
        d1 = self.d1(x)
        return d1, self.d2(d1)

    def _q_z1(self, d1: Tensor, z2: Tensor) -> Distribution:
        return dist.Normal(*self.merge(self.est1.params(d1), self.top_down.params(z2))).to_event(1)

    @staticmethod
    def merge(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The product of two diagonal Gaussians, renormalised: precisions add and the mean is
        the precision-weighted mean."""
        (loc_a, scale_a), (loc_b, scale_b) = a, b
        prec_a, prec_b = scale_a.pow(-2), scale_b.pow(-2)
        var = 1.0 / (prec_a + prec_b)
        return (loc_a * prec_a + loc_b * prec_b) * var, var.sqrt()

    def posterior(self, x: Tensor) -> Distribution:
        """q(z1 | z2 = mû2(x), x)."""
        d1, d2 = self.bottom_up(x)
        return self._q_z1(d1, self.est2.params(d2)[0])

    @torch.no_grad()
    def point(self, x: Tensor) -> dict[str, Tensor]:
        """{"z1": mean of q(z1 | z2, x) at z2 = mû2, "z2": mû2}."""
        d1, d2 = self.bottom_up(x)
        z2 = self.est2.params(d2)[0]
        return {"z1": self._q_z1(d1, z2).mean, "z2": z2}
