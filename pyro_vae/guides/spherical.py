"""Amortized power spherical encoder: codes on the unit hypersphere (S-VAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution

from ..spherical import PowerSpherical
from .base import AmortizedGuide


class SphericalGuide(AmortizedGuide):
    """q(z | x) = PowerSpherical(μ_φ(x) / |μ_φ(x)|, κ_φ(x)) on S^{z_dim - 1}, site "z"
    (De Cao & Aziz 2020; the reparameterizable counterpart of Davidson et al. 2018's von
    Mises-Fisher). ``κ = softplus(k) + 1`` from the encoder's last output. Pair it with a prior
    on the sphere (``--prior spherical``). Its point summary is the mean direction μ.
    Constructor arguments: see :class:`~pyro_vae.guides.base.AmortizedGuide`.
    """

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: a direction and a raw concentration."""
        return z_dim + 1

    def posterior(self, x: Tensor) -> Distribution:
        out = self.encoder(x)
        direction = out[..., :-1]
        loc = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return PowerSpherical(loc, F.softplus(out[..., -1]) + 1)

    @torch.no_grad()
    def point(self, x: Tensor) -> Tensor:
        """The mean direction μ (a unit vector; the mode of q(z | x))."""
        return self.posterior(x).mode
