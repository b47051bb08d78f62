"""Distributions on the unit hypersphere S^{d-1} = {z in R^d : |z| = 1}, for hyperspherical
latent spaces (Davidson et al. 2018's S-VAE): the uniform prior and the power spherical
distribution of De Cao & Aziz (2020), a reparameterizable stand-in for the von Mises-Fisher
whose draws need no rejection sampling and whose normaliser needs no Bessel functions.

Power spherical, mean direction μ (|μ| = 1) and concentration κ >= 0, with α = (d-1)/2 + κ
and β = (d-1)/2::

    p(z) = (1 + μ·z)^κ / C(κ, d),   C(κ, d) = 2^(α+β) π^β Γ(α) / Γ(α+β)

Draw t = 2b - 1 with b ~ Beta(α, β), v uniform on S^{d-2}, y = (t, sqrt(1 - t²) v), and
reflect e_1 onto μ (Householder). Its entropy and its KL to the uniform distribution are closed
forms (registered with ``torch.distributions.kl``, so ``--elbo meanfield`` uses them)::

    H = log C - κ (log 2 + ψ(α) - ψ(α + β)),    KL(PS || U) = log |S^{d-1}| - H
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor
from torch.distributions import Beta, register_kl


def log_sphere_area(d: int) -> float:
    """log of the surface area of S^{d-1} in R^d: log(2 π^(d/2) / Γ(d/2))."""
    return math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)


class HypersphericalUniform(TorchDistribution):
    """The uniform distribution on S^{d-1}: log p(z) = -log |S^{d-1}|."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.sphere
    has_rsample = True

    def __init__(
        self, dim: int, batch_shape: tuple[int, ...] = (), device: torch.device | None = None
    ) -> None:
        if dim < 2:
            raise ValueError(f"the hypersphere needs z_dim >= 2; got {dim}")
        self.dim, self.device = dim, device
        super().__init__(torch.Size(batch_shape), torch.Size([dim]), validate_args=False)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        return HypersphericalUniform(self.dim, torch.Size(batch_shape), self.device)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        z = torch.randn(shape, device=self.device)
        return z / z.norm(dim=-1, keepdim=True)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.full(value.shape[:-1], -log_sphere_area(self.dim), device=value.device)

    def entropy(self) -> Tensor:
        return torch.full(self.batch_shape, log_sphere_area(self.dim), device=self.device)


class PowerSpherical(TorchDistribution):
    """The power spherical distribution on S^{d-1} (see the module), batched over the leading
    dimensions of ``loc`` (.., d; unit vectors) and ``concentration`` (..)."""

    arg_constraints: ClassVar[dict] = {
        "loc": constraints.sphere,
        "concentration": constraints.nonnegative,
    }
    support = constraints.sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration: Tensor, validate_args: bool | None = None):
        self.loc, self.concentration = loc, concentration.expand(loc.shape[:-1])
        self.dim = loc.shape[-1]
        if self.dim < 2:
            raise ValueError(f"the hypersphere needs z_dim >= 2; got {self.dim}")
        beta = torch.full_like(self.concentration, (self.dim - 1) / 2)
        self._marginal = Beta(beta + self.concentration, beta)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        shape = torch.Size(batch_shape)
        return PowerSpherical(self.loc.expand((*shape, self.dim)), self.concentration.expand(shape))

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        t = 2 * self._marginal.rsample(shape) - 1  # (..,): the cosine to the mean direction
        v = torch.randn((*shape, *self.batch_shape, self.dim - 1), device=self.loc.device)
        v = v / v.norm(dim=-1, keepdim=True)
        y = torch.cat([t.unsqueeze(-1), (1 - t**2).clamp_min(0).sqrt().unsqueeze(-1) * v], -1)
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1
        u = e1 - self.loc
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        z = y - 2 * (y * u).sum(-1, keepdim=True) * u
        return z / z.norm(dim=-1, keepdim=True)  # on the sphere to rounding, as validated

    def log_normaliser(self) -> Tensor:
        """log C(κ, d), the normalising constant: p(z) = (1 + μ·z)^κ / C(κ, d)."""
        alpha = (self.dim - 1) / 2 + self.concentration
        beta = (self.dim - 1) / 2
        return (
            (alpha + beta) * math.log(2)
            + beta * math.log(math.pi)
            + torch.lgamma(alpha)
            - torch.lgamma(alpha + beta)
        )

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        cos = (self.loc * value).sum(-1)
        return self.concentration * torch.log1p(cos.clamp_min(-1 + 1e-7)) - self.log_normaliser()

    def entropy(self) -> Tensor:
        alpha = (self.dim - 1) / 2 + self.concentration
        beta = (self.dim - 1) / 2
        return self.log_normaliser() - self.concentration * (
            math.log(2) + torch.digamma(alpha) - torch.digamma(alpha + beta)
        )

    @property
    def mean(self) -> Tensor:
        """E[z] = E[t] μ = (α - β) / (α + β) μ (not on the sphere; its direction is μ)."""
        alpha = (self.dim - 1) / 2 + self.concentration
        beta = (self.dim - 1) / 2
        return ((alpha - beta) / (alpha + beta)).unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc


@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_power_spherical_uniform(p: PowerSpherical, q: HypersphericalUniform) -> Tensor:
    return log_sphere_area(p.dim) - p.entropy()
