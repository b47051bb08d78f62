"""Importance-weighted bounds of Rainforth et al. (2018), "Tighter Variational Bounds are Not
Necessarily Better": MIWAE, CIWAE and PIWAE, registered as objectives (``--elbo miwae``).

With M·K draws z_mk ~ q(z | x) per datum and log-weights
log w_mk = log p(x, z_mk) - log q(z_mk | x),
the bounds on log p(x) are::

    IWAE_K         = log (1/K) sum_k w_k                       (--elbo iwae; Burda et al. 2015)
    MIWAE_(M, K)   = (1/M) sum_m log (1/K) sum_k w_mk          (M IWAE bounds averaged)
    CIWAE_β        = β ELBO + (1 - β) IWAE_K                    (a convex combination)
    PIWAE_(M, K)   : the model's parameters ascend IWAE_(M·K), the guide's own ascend MIWAE_(M, K)

K is ``--particles``, M ``--iw-estimates``, β ``--ciwae-beta``. The tighter IWAE bound makes
the guide's gradient noisier as K grows (its signal-to-noise ratio falls as 1/sqrt(K)); the
three trade tightness for the guide's signal. Each is computed from the log-weights of one
vectorized Pyro trace of model and guide (reparameterized guides only); MIWAE and CIWAE are a
differentiable loss (traced steps, DDP), PIWAE computes its two gradients itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .objectives import (
    ELBOS,
    DifferentiableObjective,
    _log_sum,
    _split_params,
    require_reparameterized,
)
from .registry import Options, at_least_one, option


@dataclass
class BoundOptions(Options):
    """Options of the importance-weighted bounds."""

    iw_estimates: int = option(
        5, "--elbo miwae / piwae: M, the IWAE estimates of --particles K draws each averaged"
    )
    ciwae_beta: float = option(
        0.5, "--elbo ciwae: β in β ELBO + (1 - β) IWAE_K (1: the ELBO, 0: IWAE)"
    )

    def validate(self) -> None:
        at_least_one(self, "iw_estimates")
        if not (math.isfinite(self.ciwae_beta) and 0 <= self.ciwae_beta <= 1):
            raise ValueError(f"ciwae_beta must lie in [0, 1] (e.g. 0.5); got {self.ciwae_beta}")


def log_mean_exp(log_w: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


class ImportanceBound(DifferentiableObjective):
    """The base of the three: M·K vectorized particles per datum, the bound from their
    log-weights (:meth:`bound`, shape (batch,)), its negative sum the loss."""

    name: ClassVar[str] = "miwae"
    uses_estimates: ClassVar[bool] = True  # M read from --iw-estimates (else M = 1)

    def __init__(self, num_particles: int = 1, estimates: int = 1, beta: float = 0.5) -> None:
        super().__init__(num_particles=1, max_plate_nesting=1)
        self.k, self.m, self.beta = num_particles, estimates if self.uses_estimates else 1, beta
        self._set_particles()

    def _set_particles(self) -> None:
        self.num_particles = self.m * self.k
        self.vectorize_particles = self.num_particles > 1
        # Pyro's ELBO counts the particles' own plate in max_plate_nesting when vectorized
        self.max_plate_nesting = 1 + self.vectorize_particles

    def configure(self, config: Any, dataset_size: int) -> None:
        self.m = config.iw_estimates if self.uses_estimates else 1
        self.beta = config.ciwae_beta
        self._set_particles()

    def trace_key(self) -> tuple:
        """What a recorded graph (:mod:`pyro_vae.traced`) depends on."""
        return (self.k, self.m, self.beta)

    def log_weights(self, model, guide, args, kwargs) -> Tensor:  # type: ignore[no-untyped-def]
        """log w of the M·K draws, shape (M, K, batch)."""
        model_trace, guide_trace = next(iter(self._get_traces(model, guide, args, kwargs)))
        require_reparameterized(guide_trace, self.name)
        log_w = _log_sum(model_trace) - _log_sum(guide_trace)
        return log_w.reshape(self.m, self.k, -1)

    def bound(self, log_w: Tensor) -> Tensor:
        return log_mean_exp(log_w, 1).mean(0)

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        return -self.bound(self.log_weights(model, guide, args, kwargs)).sum()


class MIWAE(ImportanceBound):
    """MIWAE_(M, K): the mean of M IWAE_K bounds."""


class CIWAE(ImportanceBound):
    """CIWAE_β = β ELBO + (1 - β) IWAE_K on the same K draws."""

    name = "ciwae"
    uses_estimates = False

    def bound(self, log_w: Tensor) -> Tensor:
        flat = log_w.reshape(-1, log_w.shape[-1])
        return self.beta * flat.mean(0) + (1 - self.beta) * log_mean_exp(flat, 0)


class PIWAE(ImportanceBound):
    """PIWAE_(M, K): the model's parameters take the gradient of IWAE_(M·K), the guide's own
    that of MIWAE_(M, K), from the same draws (so no single loss tensor: the trainer runs
    :meth:`loss_and_grads`). The reported value is IWAE_(M·K). Needs a prior that does not read
    the guide's parameters (not a VampPrior)."""

    name = "piwae"
    has_differentiable_loss = False

    def bound(self, log_w: Tensor) -> Tensor:
        return log_mean_exp(log_w.reshape(-1, log_w.shape[-1]), 0)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        model_params, guide_params = _split_params(model, guide, self.name)
        log_w = self.log_weights(model, guide, args, kwargs)
        iwae = self.bound(log_w).sum()
        miwae = super().bound(log_w).sum()
        for objective, params in ((iwae, model_params), (miwae, guide_params)):
            if not params or not objective.requires_grad:
                continue
            grads = torch.autograd.grad(-objective, params, retain_graph=True, allow_unused=True)
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        return -iwae.item()


ELBOS.register(
    "miwae",
    lambda k: MIWAE(k),
    "MIWAE (Rainforth et al. 2018): the mean of --iw-estimates M IWAE bounds of --particles K",
    options=BoundOptions,
)
ELBOS.register(
    "ciwae",
    lambda k: CIWAE(k),
    "CIWAE (Rainforth et al. 2018): --ciwae-beta β ELBO + (1 - β) IWAE_K",
    options=BoundOptions,
)
ELBOS.register(
    "piwae",
    lambda k: PIWAE(k),
    "PIWAE (Rainforth et al. 2018): the model ascends IWAE_(M·K), the guide MIWAE_(M, K)",
    options=BoundOptions,
)
