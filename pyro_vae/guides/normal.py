"""Amortized diagonal-Normal encoder as a Pyro guide."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.distributions import Distribution

from ..nets import MLP

MIN_SCALE = 1e-4


class NormalGuide(PyroModule):
    """Amortized posterior q(z | x) = N(mu_phi(x), diag(sigma_phi(x)^2)), site "z".

    ``mu`` and ``sigma`` come from one MLP ``x_dim -> hidden... -> 2 * z_dim``;
    ``sigma = softplus(s) + 1e-4`` is positive by construction (softplus rather than exp:
    it grows linearly, so a large pre-activation cannot overflow the scale).
    The guide knows nothing of the prior.

    Args:
        x_dim: size of one flattened datum.
        z_dim: size of the latent code (must match the model's).
        hidden: widths of the encoder's hidden layers.
        activation: hidden-layer activation, one of ``nets.ACTIVATIONS``.
        encoder: another network (e.g. ``nets.ConvEncoder``) mapping (batch, x_dim) to
            (batch, 2 * z_dim), instead of the MLP.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        width = self.encoder_width(z_dim)
        self.encoder = MLP(x_dim, hidden, width, activation) if encoder is None else encoder

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: loc and raw scale."""
        return 2 * z_dim

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z|x) encodes data: call guide(x) with x given")
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.posterior(x))

    def posterior(self, x: Tensor) -> Distribution:
        """q(z | x) for a batch ``x`` of shape (batch, x_dim)."""
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)
