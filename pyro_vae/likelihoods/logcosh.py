"""The log-cosh likelihood (PyTorch-VAE's LogCoshVAE, Chen et al. 2019), as a normalised density.

PyTorch-VAE's reconstruction loss is (1/a) log cosh(a (x̃ - x)), summed over values: quadratic
for small errors, linear (L1) for large ones. Read as a likelihood it is the density::

    p(x_i | z) = cosh(a (x_i - x̃_i) / s)^(-1/a) / (s C_a),   x̃ = f(z),
    C_a = ∫ cosh(a u)^(-1/a) du = B(1 / (2a), 1/2) / a

(a hyperbolic-secant family: ∫ sech(u)^ν du = B(ν/2, 1/2)), with one learned scale s, so that
its ELBO and log p(x) are honest nats like every other normalised likelihood's. ``a`` is
``--logcosh-alpha`` (PyTorch-VAE's default 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor, nn

from ..registry import Options, option
from . import LIKELIHOODS

LOG2 = math.log(2.0)


def log_cosh(u: Tensor) -> Tensor:
    """log cosh(u), stable for large |u|."""
    a = u.abs()
    return a + F.softplus(-2 * a) - LOG2


def log_normaliser(alpha: float) -> float:
    """log C_a = log(B(1/(2a), 1/2) / a): the integral of cosh(a u)^(-1/a) over the reals."""
    nu = 1.0 / alpha
    log_beta = math.lgamma(nu / 2) + math.lgamma(0.5) - math.lgamma(nu / 2 + 0.5)
    return log_beta - math.log(alpha)


class LogCoshDistribution(TorchDistribution):
    """Independent values with density cosh(a (x - loc) / scale)^(-1/a) / (scale C_a) (batch:
    ``loc``'s leading dimensions; event: its last). Symmetric about ``loc``: mean = loc."""

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self, loc: Tensor, scale: Tensor, alpha: float, validate_args: bool | None = None
    ) -> None:
        self.loc, self.scale, self.alpha = loc, scale.expand_as(loc), float(alpha)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        shape = torch.Size(batch_shape) + self.event_shape
        return LogCoshDistribution(self.loc.expand(shape), self.scale.expand(shape), self.alpha)

    def log_prob(self, value: Tensor) -> Tensor:
        u = self.alpha * (value - self.loc) / self.scale
        log_density = -log_cosh(u) / self.alpha - self.scale.log() - log_normaliser(self.alpha)
        return log_density.sum(-1)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Rejection sampling from a Laplace envelope: cosh(v)^-ν <= 2^ν exp(-ν |v|) for
        v = a u, ν = 1/a (accepting with probability (cosh(v) / (e^|v| / 2))^-ν)."""
        shape = torch.Size(sample_shape) + self.loc.shape
        nu = 1.0 / self.alpha
        v = torch.empty(shape, device=self.loc.device)
        todo = torch.ones(shape, dtype=torch.bool, device=self.loc.device)
        while todo.any():
            n = int(todo.sum())
            draw = torch.distributions.Laplace(0.0, 1.0 / nu).sample((n,)).to(v)
            log_accept = -nu * (log_cosh(draw) - draw.abs() + LOG2)
            ok = torch.rand(n, device=v.device).log() < log_accept
            idx = todo.nonzero(as_tuple=True)
            chosen = tuple(i[ok] for i in idx)
            v[chosen] = draw[ok]
            todo[chosen] = False
        return self.loc + self.scale * v / self.alpha


@dataclass
class LogCoshOptions(Options):
    """Options of the log-cosh likelihood."""

    logcosh_alpha: float = option(
        10.0,
        "logcosh: a in cosh(a (x - x̃) / s)^(-1/a): quadratic errors below about s/a, linear "
        "above (PyTorch-VAE's 10)",
        group="model",
    )

    def validate(self) -> None:
        a = self.logcosh_alpha
        if not (math.isfinite(a) and 0 < a <= 1000):
            raise ValueError(f"logcosh_alpha must lie in (0, 1000] (e.g. 10); got {a}")


class LogCosh(nn.Module):
    """p(x|z) = prod_i LogCosh(x_i; f(z)_i, s, a): one learned scale s (see the module)."""

    data_hint = "log-cosh needs finite real-valued data"

    def __init__(self, logcosh_alpha: float = 10.0) -> None:
        super().__init__()
        LogCoshOptions(logcosh_alpha).validate()
        self.alpha = float(logcosh_alpha)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, out: Tensor) -> LogCoshDistribution:
        return LogCoshDistribution(out, self.log_scale.exp(), self.alpha, validate_args=False)


LIKELIHOODS.register(
    "logcosh",
    LogCosh,
    "log-cosh (PyTorch-VAE's LogCoshVAE) as a normalised density, one learned scale",
    options=LogCoshOptions,
)
