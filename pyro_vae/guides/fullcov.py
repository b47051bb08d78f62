"""Amortized full-covariance Normal encoder as a Pyro guide."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import AmortizedGuide
from .normal import MIN_SCALE


class FullCovGuide(AmortizedGuide):
    """q(z | x) = N(mu_φ(x), L_φ(x) L_φ(x)^T), site "z", with a predicted Cholesky factor L:
    a positive diagonal (softplus + 1e-4) and a free strictly-lower triangle, so the posterior
    can be correlated. One MLP emits z_dim + z_dim + z_dim (z_dim - 1) / 2 numbers."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, hidden, activation, encoder)
        self.n_lower = z_dim * (z_dim - 1) // 2
        rows, cols = torch.tril_indices(z_dim, z_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: loc, raw diagonal, strict lower triangle."""
        return 2 * z_dim + z_dim * (z_dim - 1) // 2

    def posterior(self, x: Tensor) -> Distribution:
        out = self.encoder(x)
        loc, raw_diag, lower = out.split([self.z_dim, self.z_dim, self.n_lower], dim=-1)
        tril = lower.new_zeros(*lower.shape[:-1], self.z_dim, self.z_dim)
        tril[..., self.rows, self.cols] = lower
        tril = tril + torch.diag_embed(F.softplus(raw_diag) + MIN_SCALE)
        return dist.MultivariateNormal(loc, scale_tril=tril)
