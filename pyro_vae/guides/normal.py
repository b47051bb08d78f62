"""Amortized diagonal-Normal encoder as a Pyro guide."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import AmortizedGuide

MIN_SCALE = 1e-4


class NormalGuide(AmortizedGuide):
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
        super().__init__(x_dim, z_dim, hidden, activation, encoder, self.encoder_width(z_dim))

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: loc and raw scale."""
        return 2 * z_dim

    def posterior(self, x: Tensor) -> Distribution:
        """q(z | x) for a batch ``x`` of shape (batch, x_dim)."""
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)
