"""Normalizing-flow encoder: inverse autoregressive flows on a diagonal Normal, as a guide."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.transforms import conditional_affine_autoregressive
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import AmortizedGuide
from .normal import MIN_SCALE


class IAFGuide(AmortizedGuide):
    """q(z | x): z_0 ~ N(mu_φ(x), diag sigma_φ(x)^2), then z = f_K o ... o f_1(z_0) with
    inverse autoregressive flows f_k (Kingma et al. 2016) conditioned on a context h_φ(x) from
    the same encoder (``pyro.distributions.transforms.conditional_affine_autoregressive``).
    The density is not a product over coordinates, so it has no analytic KL: the mean-field
    ELBOs refuse it."""

    mean_field = False

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        flows: int = 2,
        context_dim: int = 50,
        flow_hidden: int = 100,
        encoder: nn.Module | None = None,
    ) -> None:
        width = self.encoder_width(z_dim, context_dim)
        super().__init__(x_dim, z_dim, hidden, activation, encoder, width)
        self.context_dim = context_dim
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(z_dim, context_dim, hidden_dims=[flow_hidden])
            for _ in range(flows)
        )

    @staticmethod
    def encoder_width(z_dim: int, context_dim: int = 50) -> int:
        """Outputs the encoder network must give: loc, raw scale and the flows' context."""
        return 2 * z_dim + context_dim

    def posterior(self, x: Tensor) -> Distribution:
        loc, raw, context = self.encoder(x).split([self.z_dim, self.z_dim, self.context_dim], -1)
        base = dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)
        return dist.TransformedDistribution(base, [f.condition(context) for f in self.flows])

    @torch.no_grad()
    def point(self, x: Tensor) -> Tensor:
        """The flows applied to the base Normal's mean, f_K o ... o f_1(mu(x)): the image of
        the base distribution's centre (the flow's mean has no closed form)."""
        q = self.posterior(x)
        z = q.base_dist.mean
        for transform in q.transforms:
            z = transform(z)
        return z
