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
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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

from .registry import Options, Registry, non_negative, option


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
        require_reparameterized(guide_trace, "iwae-dreg")
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


def require_reparameterized(guide_trace: poutine.Trace, objective: str) -> None:
    """Refuse, in one line, a guide with a latent site that cannot be reparameterized: the
    ``objective``'s guide gradient flows through the draws."""
    for site in guide_trace.nodes.values():
        if _latent(site) and not site["fn"].has_rsample:
            raise ValueError(
                f"--elbo {objective} needs a reparameterized guide; site {site['name']!r} "
                "is not: use --elbo iwae"
            )


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


def _split_params(
    model: Any, guide: Any, objective: str = "iwae-dreg"
) -> tuple[list[Tensor], list[Tensor]]:
    """The model's parameters, and the guide's own (those the model does not hold), for an
    ``objective`` that gives the two different gradients."""
    model_params = list(model.parameters()) if isinstance(model, nn.Module) else []
    held = {id(p) for p in model_params}
    guide_params = [
        p for p in (guide.parameters() if isinstance(guide, nn.Module) else []) if id(p) not in held
    ]
    prior = getattr(model, "prior", None)
    if getattr(prior, "guide", None) is not None:
        raise ValueError(
            f"--elbo {objective} needs a prior that does not read the guide (a VampPrior "
            "does): use --elbo iwae, or another prior"
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


def total_correlation(z: Tensor, loc: Tensor, scale: Tensor, dataset_size: int) -> Tensor:
    """Minibatch-weighted-sampling estimate of the total correlation KL(q(z) || Π_d q(z_d))
    at each z_i of a batch (Chen et al. 2018, section 4.1), shape (batch,).

    ``z`` (M, D) are draws from the Gaussian posteriors N(loc_j, scale_j) of a batch of M from
    a data set of N = ``dataset_size``. The aggregate posterior q(z) = (1/N) Σ_n q(z | x_n) at
    z_i (drawn from x_i's posterior) is estimated with the weights 1/N for j = i and
    (N - 1) / (N (M - 1)) for the other j, and each marginal q(z_d) alike. (The paper's eq. 5
    and its code normalize by 1/(N M) instead: a constant offset of (D - 1) log N in the TC,
    the same gradients; these weights make the estimate consistent, tested against the
    closed form of correlated Gaussians.)"""
    m = z.shape[0]
    lq = torch.distributions.Normal(loc[None], scale[None]).log_prob(z[:, None])  # (i, j, d)
    n = max(int(dataset_size), m)
    other = math.log((n - 1) / (n * (m - 1))) if m > 1 else -math.inf
    log_w = torch.full((m, m), other, dtype=lq.dtype, device=lq.device)
    log_w.fill_diagonal_(-math.log(n))
    log_qz = torch.logsumexp(lq.sum(-1) + log_w, dim=1)
    log_marginals = torch.logsumexp(lq + log_w[..., None], dim=1).sum(-1)
    return log_qz - log_marginals


def _latent_gaussians(guide_trace: poutine.Trace) -> list[tuple[Tensor, Tensor, Tensor]]:
    out = []
    for name, site in guide_trace.nodes.items():
        if not _latent(site):
            continue
        fn = site["fn"]
        base = fn.base_dist if isinstance(fn, torch.distributions.Independent) else fn
        if not isinstance(base, torch.distributions.Normal) or site["value"].dim() != 2:
            raise ValueError(
                f"--elbo tcvae needs mean-field Normal latents of shape (batch, dim); site "
                f"{name!r} is {type(base).__name__} {tuple(site['value'].shape)}: use "
                "--guide normal"
            )
        out.append(
            (site["value"], base.loc.expand_as(site["value"]), base.scale.expand_as(site["value"]))
        )
    return out


class DifferentiableObjective(Trace_ELBO):
    """An objective defined by its ``differentiable_loss`` (a loss tensor to minimise): its
    ``loss`` (the value, without gradients) and ``loss_and_grads`` (backpropagated) follow from
    it, so that every way Pyro's SVI or the trainer calls it optimises the same objective."""

    def loss(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


@dataclass
class TCVAEOptions(Options):
    """Options of β-TCVAE (``--elbo tcvae``)."""

    tc_weight: float = option(6.0, "--elbo tcvae: weight β of the total-correlation term")

    def validate(self) -> None:
        non_negative(self, "tc_weight")


class TCVAE_ELBO(DifferentiableObjective):
    """β-TCVAE (Chen, Li, Grosse & Duvenaud 2018): the ELBO with the total-correlation part
    of its KL term weighted by β,

        E_q[log p(x|z)] - KL(q(z|x) || p(z)) - (β - 1) TC(q(z)),

    the TC estimated by minibatch-weighted sampling (:func:`total_correlation`), which needs
    the training set's size (set by the trainer: ``dataset_size``). ``tc_weight`` is β."""

    def __init__(self, tc_weight: float = 6.0, dataset_size: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tc_weight = tc_weight
        self.dataset_size = dataset_size

    def configure(self, config: Any, dataset_size: int) -> None:
        self.tc_weight, self.dataset_size = config.tc_weight, dataset_size

    def trace_key(self) -> tuple:
        """What a recorded graph (:mod:`pyro_vae.traced`) depends on."""
        return (self.tc_weight, self.dataset_size)

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        loss: Tensor | float = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            elbo = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
            tc = sum(
                total_correlation(z, loc, scale, self.dataset_size).sum()
                for z, loc, scale in _latent_gaussians(guide_trace)
            )
            loss = loss - elbo + (self.tc_weight - 1) * tc
        return loss / self.num_particles


@dataclass
class CapacityOptions(Options):
    """Options of KL capacity annealing (``--elbo capacity``)."""

    capacity: float = option(
        25.0, "--elbo capacity: the KL target C (nats per datum) reached after the ramp"
    )
    capacity_epochs: int = option(10, "--elbo capacity: epochs over which C rises from 0")
    capacity_gamma: float = option(1000.0, "--elbo capacity: weight γ of |KL - C|")

    def validate(self) -> None:
        non_negative(self, "capacity", "capacity_gamma")
        if self.capacity_epochs < 1:
            raise ValueError(f"capacity_epochs must be at least 1; got {self.capacity_epochs}")


class CapacityELBO(DifferentiableObjective):
    """KL capacity annealing (Burgess et al. 2018, "Understanding disentangling in β-VAE"):

        E_q[log p(x|z)] - γ |KL(q(z|x) || p(z)) - C|,

    with the KL term (nats per datum, batch mean, estimated from the draws as Trace_ELBO does)
    pulled towards a target C that the trainer raises linearly from 0 to ``capacity`` over
    ``capacity_epochs`` epochs (set per epoch: ``set_epoch``)."""

    def __init__(
        self, gamma: float = 1000.0, capacity: float = 25.0, epochs: int = 10, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.gamma, self.capacity, self.epochs = gamma, capacity, epochs
        self.target = 0.0

    def configure(self, config: Any, dataset_size: int) -> None:
        self.gamma = config.capacity_gamma
        self.capacity, self.epochs = config.capacity, config.capacity_epochs

    def set_epoch(self, epoch: int) -> None:
        """The target C of 0-based ``epoch``: capacity · min(1, (epoch + 1) / epochs)."""
        self.target = self.capacity * min(1.0, (epoch + 1) / max(1, self.epochs))

    def trace_key(self) -> tuple:
        return (self.gamma, self.target)

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        loss: Tensor | float = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            rec: Tensor | float = 0.0
            kl: Tensor | float = 0.0
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                if site["is_observed"]:
                    rec = rec + site["log_prob_sum"]
                else:
                    kl = kl + guide_trace.nodes[name]["log_prob_sum"] - site["log_prob_sum"]
            batch = args[0].shape[0]
            loss = loss - rec + self.gamma * batch * (kl / batch - self.target).abs()
        return loss / self.num_particles


def _particles(k: int) -> dict[str, Any]:
    return {"num_particles": k, "vectorize_particles": k > 1, "max_plate_nesting": 1}


# Objectives by name; each factory takes the number of particles k.
@runtime_checkable
class Configured(Protocol):
    """An objective with options of its own, read from the run's config and the size of the
    training data before training (β-TCVAE, capacity annealing)."""

    def configure(self, config: Any, dataset_size: int) -> None: ...


@runtime_checkable
class Scheduled(Protocol):
    """An objective with a schedule of its own, told the epoch before it starts."""

    def set_epoch(self, epoch: int) -> None: ...


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
    "tcvae",
    lambda k: TCVAE_ELBO(num_particles=k, max_plate_nesting=1),
    "β-TCVAE (Chen et al. 2018): total correlation weighted by --tc-weight",
    options=TCVAEOptions,
)
ELBOS.register(
    "capacity",
    lambda k: CapacityELBO(num_particles=k, max_plate_nesting=1),
    "KL capacity annealing (Burgess et al. 2018): --capacity-gamma |KL - C|, C raised to "
    "--capacity nats over --capacity-epochs",
    options=CapacityOptions,
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
    ``loss_and_grads``: Pyro 1.9.2's RenyiELBO has no ``differentiable_loss``, and PIWAE gives
    its model and guide different gradients)."""
    return not isinstance(elbo, RenyiELBO) and getattr(elbo, "has_differentiable_loss", True)


__all__ = [
    "ELBOS",
    "TCVAE_ELBO",
    "CapacityELBO",
    "DReG_ELBO",
    "DifferentiableObjective",
    "ScaleLatents",
    "kl_weight",
    "make_elbo",
    "pyro",
    "total_correlation",
]

# the objectives of their own modules register themselves
from . import bounds, critics, divergences, hamiltonian  # noqa: E402,F401
