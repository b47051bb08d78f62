"""A VAE with two stochastic layers as one Pyro model."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from ..likelihoods import LikelihoodLike
from ..nets import MLP
from ..priors import PriorLike
from .vae import VAEModel

MIN_SCALE = 1e-4


class ConditionalNormal(nn.Module):
    """(batch, in_dim) -> N(mu(h), diag sigma(h)^2) over ``out_dim`` numbers, from one MLP
    ``in_dim -> hidden... -> 2 * out_dim``; sigma = softplus + 1e-4. ``params(h)`` gives
    (loc, scale) for code that merges Gaussians (the ladder guide)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "elu"):
        super().__init__()
        self.net = MLP(in_dim, hidden, 2 * out_dim, act)
        self.in_dim, self.out_dim = in_dim, out_dim

    def params(self, h: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw = self.net(h).chunk(2, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE

    def forward(self, h: Tensor) -> Distribution:
        return dist.Normal(*self.params(h)).to_event(1)


class HierarchicalModel(VAEModel):
    """A VAE with two stochastic layers (Burda et al. 2015, Sønderby et al. 2016), one datum at
    a time inside ``pyro.plate("data")``::

        z2 ~ p(z2)                                     # top prior, N(0, I) by default  site "z2"
        z1 ~ p(z1 | z2) = N(mu_θ(z2), diag σ_θ(z2)²)   # the top-down layer             site "z1"
        x  ~ p(x | z1) = L(f_θ(z1))                    # likelihood of the decoder       site "x"

    The top prior is swappable as the VAE's is (``prior=`` over ``z2_dim`` numbers);
    ``mu_θ, σ_θ`` come from an MLP ``z2_dim -> top_hidden... -> 2 * z1_dim`` and ``f_θ`` from an
    MLP ``z1_dim -> reversed(hidden)... -> x_dim * params_per_pixel``. Burda et al.'s MNIST
    architecture is ``hidden=(200, 200)``, ``z1_dim=100``, ``top_hidden=(100, 100)``,
    ``z2_dim=50``. ``model(x)`` scores data, ``model(batch_size=n)`` generates;
    ``decode(z1)`` is p(x | z1). ``z_dim`` is the top layer's size (the prior's).
    """

    def __init__(
        self,
        x_dim: int,
        z1_dim: int = 100,
        z2_dim: int = 50,
        hidden: Sequence[int] = (200, 200),
        top_hidden: Sequence[int] = (100, 100),
        prior: PriorLike | None = None,
        likelihood: LikelihoodLike | None = None,
        activation: str = "elu",
    ) -> None:
        params_per_pixel = getattr(likelihood, "params_per_pixel", 1)
        decoder = MLP(z1_dim, tuple(reversed(hidden)), x_dim * params_per_pixel, activation)
        super().__init__(x_dim, z2_dim, hidden, prior, likelihood, activation, decoder=decoder)
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        self.top_down = ConditionalNormal(z2_dim, tuple(reversed(top_hidden)), z1_dim, activation)

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        n = self._num_data(x, batch_size)
        with pyro.plate("data", n):
            z2 = self.sample_z2()
            z1 = self.sample_z1(z2)
            return self.sample_x(z1, x)

    def sample_z2(self) -> Tensor:
        """z2 ~ p(z2), the top prior."""
        return pyro.sample("z2", self.prior())

    def sample_z1(self, z2: Tensor) -> Tensor:
        """z1 ~ p(z1 | z2)."""
        return pyro.sample("z1", self.top_down(z2))
