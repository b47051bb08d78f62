"""Amortized diagonal-Normal encoder as a Pyro guide."""

from __future__ import annotations

import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution

from .base import AmortizedGuide

MIN_SCALE = 1e-4


class NormalGuide(AmortizedGuide):
    """Amortized posterior q(z | x) = N(mu_phi(x), diag(sigma_phi(x)^2)), site "z".

    ``mu`` and ``sigma`` come from one MLP ``x_dim -> hidden... -> 2 * z_dim``;
    ``sigma = softplus(s) + 1e-4`` is positive by construction (softplus rather than exp:
    it grows linearly, so a large pre-activation cannot overflow the scale).
    The guide knows nothing of the prior.
    Constructor arguments: see :class:`~pyro_vae.guides.base.AmortizedGuide`.
    """

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: loc and raw scale."""
        return 2 * z_dim

    def posterior(self, x: Tensor, *context: Tensor) -> Distribution:
        """q(z | x) for a batch ``x`` of shape (batch, x_dim) (and ``context``, e.g. a label,
        for an encoder that takes it)."""
        loc, raw_scale = self.encoder(x, *context).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)
