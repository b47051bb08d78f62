"""Priors p(z) over the latent code.

A prior is anything that, called with no arguments, returns a distribution with
``event_shape == (z_dim,)`` and empty batch shape. Project priors are ``nn.Module`` s so
they follow the model across devices and, when they have parameters, are learned with it.
Add a prior by writing one such class and, for the CLI, one entry in ``PRIORS``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Distribution, constraints

PriorLike = nn.Module | Distribution | Callable[[], Distribution]


class StandardNormal(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self) -> Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class Flat(nn.Module):
    """p(z) ∝ 1 on R^z_dim: an improper prior (log p(z) = 0) that cannot be sampled.

    With ``guides.DeltaGuide`` it turns the ELBO into a plain autoencoder's objective.
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim

    def forward(self) -> Distribution:
        return dist.ImproperUniform(constraints.real, (), (self.z_dim,))


class FixedPrior:
    """Wraps a user's ``torch.distributions.Distribution`` as a prior (not learned).

    The distribution is not moved with ``model.to(device)``: build it on the data's device.
    """

    def __init__(self, distribution: Distribution) -> None:
        self.distribution = distribution

    def __call__(self) -> Distribution:
        return self.distribution

    def __repr__(self) -> str:
        return f"FixedPrior({self.distribution!r})"


def as_prior(prior: PriorLike | None, z_dim: int) -> nn.Module | Callable[[], Distribution]:
    """Check ``prior`` and return a zero-argument callable producing p(z).

    Accepts a project prior, any ``nn.Module`` whose call returns the distribution (its
    parameters are then learned), a plain callable, or a ``torch.distributions.Distribution``.
    """
    if prior is None:
        prior = StandardNormal(z_dim)
    if isinstance(prior, Distribution):
        prior = FixedPrior(prior)
    if not callable(prior):
        raise TypeError(
            f"prior must be a torch Distribution, an nn.Module or a callable returning one; "
            f"got {type(prior).__name__}"
        )
    with torch.no_grad():
        d = prior()
    if not isinstance(d, Distribution):
        raise TypeError(f"prior() must return a torch Distribution; got {type(d).__name__}")
    if tuple(d.event_shape) != (z_dim,) or tuple(d.batch_shape) != ():
        raise ValueError(
            f"prior must have event_shape ({z_dim},) and batch_shape (); got event_shape "
            f"{tuple(d.event_shape)}, batch_shape {tuple(d.batch_shape)} "
            "(use .to_event(1) on a per-dimension distribution)"
        )
    return prior


PRIORS: dict[str, Callable[[int], nn.Module]] = {
    "standard-normal": StandardNormal,
    "flat": Flat,
}
