"""The one evaluation routine: test ELBO and importance-sampled log-likelihood, in nats.

The importance-sampled estimate of log p(x) with K samples from the guide (Burda et al. 2015),

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x),

is a stochastic lower bound that tightens as K grows (K = 1 is the ELBO). It is computed for
many data and samples at once: the guide runs under a ``pyro.plate("particles", ...)``, the
model is replayed on its samples, and the per-datum log-weights are combined with logsumexp.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor, nn

from . import distributed
from .inputs import as_input
from .likelihoods import check_support
from .runtime import fixed_mmap_threshold, inference, progress_bar

# decoder outputs held at once (samples x data) while estimating log p(x), and at most this
# many of their values (x_dim times the likelihood's parameters per value each)
MAX_ELEMENTS = 1 << 13
MAX_VALUES = 1 << 26

# What the model and guide are called with: x, or a tuple such as (x, y) for the conditional
# models. The first tensor is the data scored; all are split along their first dimension.
Data = Tensor | tuple[Tensor, ...]


def chunk_budget(model: nn.Module, x: Tensor) -> int:
    """How many (sample, datum) pairs log p(x) decodes at once: :data:`MAX_ELEMENTS`, fewer
    where each datum's decoded parameters are many (a 5-component logistic mixture of a
    64 x 64 x 3 image has 184,320; 8,192 of them at once were killed for memory on 24 GB)."""
    per_datum = x[0].numel() * int(
        getattr(getattr(model, "likelihood", None), "params_per_pixel", 1)
    )
    return max(1, min(MAX_ELEMENTS, MAX_VALUES // max(1, per_datum)))


def as_args(data: Data) -> tuple[Tensor, ...]:
    return data if isinstance(data, tuple) else (data,)


def inputs(data: Data) -> tuple[Tensor, ...]:
    """The arguments model and guide are called with: ``data``'s tensors, the first (the
    images, as stored) turned into float rows by :func:`pyro_vae.inputs.as_input`."""
    args = as_args(data)
    return (as_input(args[0]), *args[1:])


def chunks(data: Data, size: int) -> list[tuple[Tensor, ...]]:
    """``data`` split into chunks of ``size`` data, each as model arguments (see
    :func:`inputs`): how every evaluation walks a data set without a float copy of it."""
    return [inputs(c) for c in zip(*(a.split(size) for a in as_args(data)), strict=True)]


def check_data(model: nn.Module, data: Data) -> None:
    """Check the data once against the model's likelihood support (then run unvalidated)."""
    likelihood = getattr(model, "likelihood", None)
    x_dim = getattr(model, "x_dim", None)
    if likelihood is not None and x_dim is not None:
        x = as_args(data)[0]
        k = getattr(likelihood, "params_per_pixel", 1)
        with torch.no_grad():
            px = likelihood(torch.zeros(1, x_dim * k, device=x.device))
        for xb in x.split(10000):
            check_support(px, as_input(xb), likelihood)


@torch.no_grad()
def elbo_terms(
    model: nn.Module, guide: nn.Module, x: Data, batch_size: int = 1000, num_particles: int = 1
) -> dict[str, float]:
    """Mean ELBO per datum (nats) and its two terms, by Monte Carlo with ``num_particles``
    draws of the latents z ~ q(z|x) per datum:

    - ``reconstruction``: E_q[log p(x | z)];
    - ``kl``: E_q[log q(z | x) - log p(z)] = KL(q(z|x) || p(z));
    - ``elbo`` = reconstruction - kl.

    ``x`` may be a tuple of arguments, e.g. ``(x, y)`` for the conditional VAE (then the
    bound is on log p(x | y)). Discrete latents (M2's y) are sampled, not enumerated.
    """
    check_data(model, x)
    args = as_args(x)
    rec = kl = 0.0
    with inference(model, guide), pyro.validation_enabled(False):
        for batch in chunks(args, batch_size):
            log_lik, log_prior, log_q = _log_prob_parts(model, guide, batch, num_particles)
            rec += log_lik.mean(0).sum().item()
            kl += (log_q - log_prior).mean(0).sum().item()
    n = args[0].shape[0]
    return {"elbo": (rec - kl) / n, "reconstruction": rec / n, "kl": kl / n}


def elbo(
    model: nn.Module, guide: nn.Module, x: Data, batch_size: int = 1000, num_particles: int = 1
) -> float:
    """Mean ELBO per datum (nats) of ``x``; see :func:`elbo_terms`."""
    return elbo_terms(model, guide, x, batch_size, num_particles)["elbo"]


@torch.no_grad()
def log_weights(model: nn.Module, guide: nn.Module, x: Data, num_samples: int) -> Tensor:
    """log p(x, z_k) - log q(z_k | x) for ``num_samples`` draws per datum: shape (K, batch)."""
    log_lik, log_prior, log_q = _log_prob_parts(model, guide, inputs(x), num_samples)
    return log_lik + log_prior - log_q


@torch.no_grad()
def accuracy(guide: nn.Module, x: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose most probable class under ``guide.classify`` (q(y|x)) is the
    label (class indices, or one-hot rows)."""
    if labels.dim() == 2:
        labels = labels.argmax(-1)
    with inference(guide):
        predicted = torch.cat([guide.classify(xb).argmax(-1) for (xb,) in chunks(x, batch_size)])
    return (predicted == labels).float().mean().item()


def point_estimate(guide: nn.Module, x: Data) -> bool:
    """Whether the guide is a point mass (a Delta): it has no density to importance-sample."""
    with inference(guide):
        trace = poutine.trace(guide).get_trace(*inputs(tuple(a[:1] for a in as_args(x))))
    return any(
        isinstance(site["fn"], dist.Delta)
        or isinstance(getattr(site["fn"], "base_dist", None), dist.Delta)
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
    )


def _log_prob_parts(
    model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...], num_samples: int
) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x|z), log p(z) and log q(z|x), each of shape (num_samples, batch)."""
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    x = args[0]
    shape = (num_samples, x.shape[0])
    return (
        _log_prob(model_trace, shape, x.device, observed=True),
        _log_prob(model_trace, shape, x.device, observed=False),
        _log_prob(guide_trace, shape, x.device, observed=False),
    )


def _log_prob(
    trace: poutine.Trace, shape: tuple[int, int], device: torch.device, observed: bool
) -> Tensor:
    """Sum of the log-probabilities of the observed (or the latent) sample sites."""
    total = torch.zeros(shape, device=device)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"] != observed:
            continue
        lp = site["fn"].log_prob(site["value"])
        if lp.shape != shape:
            raise NotImplementedError(
                f"site {name!r} has log-prob shape {tuple(lp.shape)}, expected {shape}: the "
                "importance-sampled estimate handles per-datum latents only"
            )
        total = total + lp
    return total


@torch.no_grad()
def log_likelihood(
    model: nn.Module,
    guide: nn.Module,
    x: Data,
    num_samples: int = 5000,
    progress: bool | None = None,
) -> Tensor:
    """Importance-sampled estimate of log p(x) per datum (nats), shape (len(x),); of
    log p(x | y) when ``x`` is the tuple ``(x, y)`` of the conditional VAE.

    ``progress``: show a progress bar (default: only when stderr is a terminal). A model whose
    likelihood is not a normalised density (:func:`normalised`) is refused: it has no p(x)."""
    if not normalised(model):
        raise ValueError(f"{not_a_density(model)}: score it with its pseudo-ELBO (evaluate.elbo)")
    check_data(model, x)
    fixed_mmap_threshold()
    if point_estimate(guide, x):
        raise ValueError(
            "the guide is a point estimate (Delta) with no density, so it cannot serve as an "
            "importance distribution for log p(x): use a Normal guide, or --ll-samples 0"
        )
    budget = chunk_budget(model, as_args(x)[0])
    sample_chunk = min(num_samples, budget)
    data_chunk = max(1, budget // sample_chunk)
    out = []
    with inference(model, guide), pyro.validation_enabled(False):
        bar = progress_bar(
            chunks(x, data_chunk),
            total=-(-as_args(x)[0].shape[0] // data_chunk),
            desc=f"log p(x), k={num_samples}",
            unit="chunks",
            progress=progress,
        )
        for xb in bar:
            parts = []
            for start in range(0, num_samples, sample_chunk):
                k = min(sample_chunk, num_samples - start)
                parts.append(torch.logsumexp(log_weights(model, guide, xb, k), dim=0))
            out.append(torch.logsumexp(torch.stack(parts), dim=0) - math.log(num_samples))
    return torch.cat(out)


def normalised(model: nn.Module) -> bool:
    """Whether the model's likelihood is a normalised density (or mass) of x: False for the
    pseudo-likelihoods (MS-SSIM, feature matching), which set ``normalised = False``; their
    ELBO is a pseudo-ELBO and no log p(x) or bits per dimension are defined."""
    return bool(getattr(getattr(model, "likelihood", None), "normalised", True))


def elbo_kind(model: nn.Module) -> str:
    """What the model's ELBO is called: "ELBO", or "pseudo-ELBO" for a pseudo-likelihood."""
    return "ELBO" if normalised(model) else "pseudo-ELBO"


def not_a_density(model: nn.Module) -> str:
    """Why a model with a pseudo-likelihood has no log p(x), in words."""
    name = type(model.likelihood).__name__
    return (
        f"the {name} likelihood is not a normalised density of x (a pseudo-likelihood): the "
        "ELBO is a pseudo-ELBO and no log p(x) is defined"
    )


def bits_per_dim(nats: float, x_dim: int, levels: int | None = 256) -> float:
    """Bits per dimension of 8-bit data from -log p(x) in nats per datum. A likelihood over
    the 256 levels (``levels=256``) gives probability masses, converted as they are; for a
    density over [0, 1] (``levels=None``) log 255 nats per dimension are added, the log-width of
    one level's bin (1/255), which makes it the mass of that bin under a density flat across it
    (an approximation without dequantization, so not comparable with published figures)."""
    offset = 0.0 if levels == 256 else math.log(255)
    return (nats / x_dim + offset) / math.log(2)


def summary(
    model: nn.Module, guide: nn.Module, x: Data, num_samples: int = 5000
) -> dict[str, float]:
    """Test ELBO and log p(x) (mean and standard error over data), nats per datum. In a
    distributed run each rank scores its shard of ``x`` and the per-datum values are gathered,
    so every rank returns the numbers of the whole of ``x``. ``num_samples`` 0 skips log p(x),
    as does a pseudo-likelihood (:func:`normalised`), whose ELBO is labelled a pseudo-ELBO."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(
            f"samples must be a whole number >= 0 (0: no log p(x)); got {num_samples!r}"
        )
    args = as_args(x)
    n = args[0].shape[0]
    if n == 0:
        raise ValueError("no test data to evaluate (0 data): give at least one datum")
    if distributed.world().size > 1:
        part = distributed.shard(n)
        x = tuple(a[part] for a in args) if len(args) > 1 else args[0][part]
    local = as_args(x)[0].shape[0]
    total = torch.tensor([elbo(model, guide, x) * local if local else 0.0], dtype=torch.float64)
    device = as_args(x)[0].device
    result: dict[str, float] = {
        "n_data": n,
        "elbo": distributed.all_sum(total.to(device)).item() / n,
    }
    if not normalised(model):
        result |= {
            "normalised_likelihood": False,
            "elbo_kind": elbo_kind(model),
            "log_likelihood_skipped": not_a_density(model),
        }
    elif num_samples > 0 and not point_estimate(guide, x):
        ll = distributed.gather(log_likelihood(model, guide, x, num_samples))
        result |= {
            "log_likelihood": ll.mean().item(),
            "log_likelihood_stderr": (ll.std() / math.sqrt(len(ll))).item() if len(ll) > 1 else 0.0,
            "importance_samples": num_samples,
        }
    return result
