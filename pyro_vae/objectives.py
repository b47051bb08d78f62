"""Training objectives: Pyro's ELBOs by name, DReG for IWAE, and the KL-weighting handler.

``ELBOS`` maps a name to a factory of the number of particles k. β-VAE and KL warm-up are not
separate objectives: :class:`ScaleLatents` reweights the latent sites inside whichever ELBO
runs under it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import (
    ELBO,
    JitTrace_ELBO,
    JitTraceMeanField_ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceMeanField_ELBO,
)
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor, nn

from .registry import Registry


class ScaleLatents(Messenger):
    """Multiply the log-densities of the latent (unobserved) sample sites by ``scale``, in the
    model and the guide alike, wherever the ELBO runs inside this handler::

        with ScaleLatents(beta):
            loss = Trace_ELBO().differentiable_loss(model, guide, x)

    The ELBO E_q[log p(x|z)] - KL(q(z|x) || p(z)) then becomes E_q[log p(x|z)] - β KL, the
    β-VAE objective (Higgins et al. 2017); raising β from 0 to 1 over the first epochs is KL
    warm-up (Sønderby et al. 2016). With several latent sites (the hierarchical VAE) every one
    is scaled. It is ``poutine.scale`` restricted to latent sites: ``poutine.scale`` would scale
    the likelihood too. ``scale`` may be changed between uses.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def trace_key(self) -> float:
        """What a recorded graph depends on (:mod:`pyro_vae.traced`): the scale."""
        return self.scale

    def _pyro_sample(self, msg: dict) -> None:
        if not msg["is_observed"] and not site_is_subsample(msg):
            msg["scale"] = self.scale * msg["scale"]


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """β for 0-based ``epoch``: ramped linearly to β over ``warmup_epochs``, then held."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)


class CachedJitTraceMeanField_ELBO(JitTraceMeanField_ELBO):
    """``JitTraceMeanField_ELBO`` that compiles once.

    Pyro 1.9.2's ``differentiable_loss`` checks for ``_loss_and_surrogate_loss`` but stores the
    compiled function as ``_differentiable_loss``, so it re-traces on every step (about 4x
    slower than not compiling at all). Setting the attribute it checks makes it reuse the
    compiled function.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss
        return loss


class DReG_ELBO(RenyiELBO):
    """The IWAE bound (``RenyiELBO(alpha=0)``) with doubly reparameterized gradients for the
    guide (Tucker, Lawson, Gu & Maddison 2019, "Doubly Reparameterized Gradient Estimators for
    Monte Carlo Objectives").

    With weights w_i = p(x, z_i) / q(z_i | x), z_i = g(ε_i, φ) and normalized weights w̃_i, the
    plain IWAE gradient of the guide's parameters φ carries a score-function term whose
    signal-to-noise ratio falls as k grows (Rainforth et al. 2018). DReG removes it exactly, by
    reparameterizing that term a second time:

        ∇_φ = Σ_i w̃_i² ∂log w_i/∂z_i ∂z_i/∂φ       (guide's own parameters)
        ∇_θ = Σ_i w̃_i ∇_θ log w_i                  (model's parameters: IWAE's gradient)

    The first is the gradient of Σ_i sg(w̃_i²) [log p(x, z_i) - log q_{sg(φ)}(z_i | x)], where
    the guide is run a second time on the same draws with its parameters held fixed; a guide
    that reads the model's parameters (the ladder guide) leaves those to the second line. The
    value is the IWAE bound. Needs a fully reparameterized guide and a prior that does not read
    the guide's parameters (not a VampPrior). ``num_particles = 1`` gives the "sticking the
    landing" gradient of Roeder et al. (2017).
    """

    def __init__(self, num_particles: int = 2, max_plate_nesting: int = 1) -> None:
        super().__init__(
            alpha=0,
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=num_particles > 1,
        )

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        model_params, guide_params = _split_params(model, guide)
        model_trace, guide_trace = next(iter(self._get_traces(model, guide, args, kwargs)))
        for site in guide_trace.nodes.values():
            if _latent(site) and not site["fn"].has_rsample:
                raise ValueError(
                    f"--elbo iwae-dreg needs a reparameterized guide; site {site['name']!r} "
                    "is not: use --elbo iwae"
                )
        log_p, log_q = _log_sum(model_trace), _log_sum(guide_trace)
        with _held_fixed(guide, guide_params):
            again = poutine.trace(
                poutine.replay(self._vectorized_num_particles(guide), trace=guide_trace)
            ).get_trace(*args, **kwargs)
        again.compute_log_prob()
        log_q_fixed = _log_sum(again)
        log_w = log_p - log_q
        weights = torch.softmax(log_w.detach(), dim=0)
        elbo = torch.logsumexp(log_w.detach(), dim=0) - math.log(log_w.shape[0])
        surrogates = (
            (-(weights * log_w).sum(), model_params),
            (-(weights.pow(2) * (log_p - log_q_fixed)).sum(), guide_params),
        )
        for surrogate, params in surrogates:
            if not params or not surrogate.requires_grad:
                continue
            grads = torch.autograd.grad(surrogate, params, retain_graph=True, allow_unused=True)
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        return -elbo.sum().item()


def _latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def _log_sum(trace: poutine.Trace) -> Tensor:
    """Sum of the (scaled) log-densities of the trace's sample sites, shape (k, batch)."""
    total: Tensor | float = 0.0
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site_is_subsample(site):
            total = total + site["log_prob"]
    assert isinstance(total, Tensor)
    return total if total.dim() == 2 else total.unsqueeze(0)


def _split_params(model: Any, guide: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The model's parameters, and the guide's own (those the model does not hold)."""
    model_params = list(model.parameters()) if isinstance(model, nn.Module) else []
    held = {id(p) for p in model_params}
    guide_params = [
        p for p in (guide.parameters() if isinstance(guide, nn.Module) else []) if id(p) not in held
    ]
    prior = getattr(model, "prior", None)
    if getattr(prior, "guide", None) is not None:
        raise ValueError(
            "--elbo iwae-dreg needs a prior that does not read the guide (a VampPrior does): "
            "use --elbo iwae, or another prior"
        )
    return [p for p in model_params if p.requires_grad], [
        p for p in guide_params if p.requires_grad
    ]


@contextlib.contextmanager
def _held_fixed(module: nn.Module, params: list[Tensor]) -> Iterator[None]:
    """Within the block, ``module`` computes with detached copies of ``params``."""
    ids = {id(p) for p in params}
    swapped = []
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None and id(p) in ids:
                sub._parameters[name] = p.detach()  # type: ignore[assignment]
                swapped.append((sub, name, p))
    try:
        yield
    finally:
        for sub, name, p in swapped:
            sub._parameters[name] = p


def _particles(k: int) -> dict[str, Any]:
    return {"num_particles": k, "vectorize_particles": k > 1, "max_plate_nesting": 1}


# Objectives by name; each factory takes the number of particles k.
ELBOS: Registry = Registry("ELBO", group="pyro_vae.elbos")
ELBOS.register("trace", lambda k: Trace_ELBO(**_particles(k)), "Trace_ELBO (default)")
ELBOS.register(
    "meanfield", lambda k: TraceMeanField_ELBO(**_particles(k)), "TraceMeanField_ELBO: analytic KL"
)
ELBOS.register(
    "jit-trace",
    lambda k: JitTrace_ELBO(**_particles(k), ignore_jit_warnings=True),
    "JitTrace_ELBO",
)
ELBOS.register(
    "jit-meanfield",
    lambda k: CachedJitTraceMeanField_ELBO(**_particles(k), ignore_jit_warnings=True),
    "JitTraceMeanField_ELBO (compiled once)",
)
ELBOS.register(
    "iwae",
    lambda k: RenyiELBO(alpha=0, **_particles(k)),
    "IWAE (Burda et al. 2015): RenyiELBO(alpha=0), the k-sample importance-weighted bound",
)
ELBOS.register(
    "iwae-dreg",
    lambda k: DReG_ELBO(num_particles=k),
    "IWAE with doubly reparameterized guide gradients (Tucker et al. 2019)",
)
ELBOS.register(
    "enum",
    lambda k: TraceEnum_ELBO(**_particles(k)),
    "TraceEnum_ELBO: sums out discrete latents marked for enumeration (M2's class)",
)
# DReG under Pyro's global param store: a PyroModule reports each detached copy of a guide
# parameter as "not registered in the param store", which is the point of holding it fixed.
warnings.filterwarnings("ignore", message=".*was not registered in the param store")
# A labelled batch of M2 has nothing to enumerate; TraceEnum_ELBO warns about that each time.
warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
# Pyro 1.9.2's Jit ELBOs trace parameters out of the global param store, so they cannot run
# with module-local parameters (KeyError on the first step); they get a private store instead.
PARAM_STORE_ELBOS = (JitTrace_ELBO, JitTraceMeanField_ELBO)


def make_elbo(name: str = "trace", num_particles: int = 1) -> ELBO:
    """An objective by name (one of ``ELBOS``), with ``num_particles`` vectorized particles."""
    if num_particles < 1:
        raise ValueError(f"--particles must be at least 1; got {num_particles}")
    return ELBOS.choose(name)(num_particles)


def differentiable(elbo: ELBO) -> bool:
    """Whether the objective gives a loss tensor to backpropagate (else it runs
    ``loss_and_grads``: Pyro 1.9.2's RenyiELBO has no ``differentiable_loss``)."""
    return not isinstance(elbo, RenyiELBO)


__all__ = ["ELBOS", "DReG_ELBO", "ScaleLatents", "kl_weight", "make_elbo", "pyro"]
