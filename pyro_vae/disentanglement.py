"""Disentanglement metrics against known generative factors (dSprites).

Each metric scores a *representation*: a function from factor-index rows (n, K) to codes
(n, D), in practice "render the images of these factors, encode them with the guide's point
summary" (:func:`encoder_representation`); tests pass the true factors, a random map and a
permuted one. Factor rows are drawn uniformly from the grid of ``sizes`` (dSprites: (3, 6, 40,
32, 32)).

- :func:`mig` -- the Mutual Information Gap (Chen, Li, Grosse & Duvenaud 2018, "Isolating
  Sources of Disentanglement in VAEs"): for each factor v_k, the gap between the two codes
  with the most mutual information with it, divided by H(v_k); averaged over factors. Codes
  are discretized into 20 equal-width bins as in disentanglement_lib (Locatello et al. 2019).
- :func:`mig_sampled` -- MIG as Chen et al.'s own code computes it: the codes are draws
  z ~ q(z|x) and each entropy H(z_j), H(z_j | v_k) is estimated under the mixture of the
  posteriors q(z_j|x_n) of the data (or of the data sharing v_k's value); the information is
  divided by log |v_k|. Their dSprites score leaves shape out (``factors``).
- :func:`beta_vae_score` -- Higgins et al. (2017): pairs of draws share one factor; a linear
  classifier predicts which factor from the mean absolute code difference over a batch.
- :func:`factor_vae_score` -- Kim & Mnih (2018, "Disentangling by Factorising"): batches share
  one factor; the code dimension of least (normalized) variance votes for it; the score is the
  accuracy of the majority-vote classifier on held-out votes.

Scores lie in [0, 1]; chance is about 1/K for the two classifier scores, 0 for MIG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Representation = Callable[[Tensor], Tensor]
# factor rows (n, K) -> loc and scale (n, D) of a mean-field Normal posterior q(z | x)
Posterior = Callable[[Tensor], tuple[Tensor, Tensor]]


def sample_factors(sizes: Sequence[int], n: int, generator: torch.Generator) -> Tensor:
    return torch.stack([torch.randint(0, k, (n,), generator=generator) for k in sizes], dim=1)


def discretize(codes: Tensor, bins: int = 20) -> Tensor:
    """Each column of ``codes`` (n, D) into ``bins`` equal-width bins over its range."""
    lo, hi = codes.min(0).values, codes.max(0).values
    width = torch.where(hi > lo, (hi - lo) / bins, torch.ones_like(hi))
    return ((codes - lo) / width).floor().clamp(0, bins - 1).long()


def mutual_information(a: Tensor, b: Tensor) -> float:
    """I(a; b) in nats of two discrete (integer) samples of equal length."""
    n = a.shape[0]
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    joint = torch.bincount(a * (int(b.max()) + 1) + b, minlength=0).double()
    joint = joint.reshape(-1) / n
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.nn.functional.pad(joint, (0, na * nb - joint.numel())).reshape(na, nb)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pa * pb)[nz]).log()).sum())


def entropy(a: Tensor) -> float:
    _, counts = torch.unique(a, return_counts=True)
    p = counts.double() / a.shape[0]
    return float(-(p * p.log()).sum())


def mig(codes: Tensor, factors: Tensor, bins: int = 20) -> dict[str, float | list[float]]:
    """The Mutual Information Gap of ``codes`` (n, D) for the factor indices (n, K):
    ``{"mig": mean gap, "per_factor": [gap_k]}`` (gaps normalized by H(v_k))."""
    binned = discretize(codes.double(), bins)
    gaps = []
    for k in range(factors.shape[1]):
        h = entropy(factors[:, k])
        if h == 0:
            continue
        info = sorted(
            (mutual_information(binned[:, d], factors[:, k]) for d in range(codes.shape[1])),
            reverse=True,
        )
        second = info[1] if len(info) > 1 else 0.0
        gaps.append((info[0] - second) / h)
    return {"mig": sum(gaps) / len(gaps), "per_factor": gaps}


def mig_score(
    represent: Representation,
    sizes: Sequence[int],
    n: int = 10_000,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """MIG on ``n`` factor rows drawn uniformly from the grid."""
    factors = sample_factors(sizes, n, torch.Generator().manual_seed(seed))
    return mig(represent(factors), factors)


def mixture_entropies(z: Tensor, loc: Tensor, scale: Tensor, chunk: int = 128) -> Tensor:
    """Per coordinate d, H(z_d) = -E log q(z_d) with q(z_d) = (1/M) Σ_m N(z_d; loc_md,
    scale_md), estimated at the draws ``z`` (S, D) of that mixture; ``loc``/``scale`` (M, D).
    Shape (D,)."""
    total = torch.zeros(z.shape[1], dtype=z.dtype)
    log_m = math.log(loc.shape[0])
    for zc in z.split(chunk):
        lq = torch.distributions.Normal(loc[None], scale[None]).log_prob(zc[:, None])
        total -= (torch.logsumexp(lq, dim=1) - log_m).sum(0)
    return total / z.shape[0]


def mig_sampled(
    posterior: Posterior,
    sizes: Sequence[int],
    n: int = 5_000,
    seed: int = 0,
    factors: Sequence[int] | None = None,
) -> dict[str, float | list[float]]:
    """The MIG of Chen et al. (2018) with their estimator, on ``n`` factor rows drawn
    uniformly from the grid: one draw z ~ q(z|x) per row; I(z_j; v_k) = H(z_j) - H(z_j | v_k)
    with both entropies under the posterior mixtures (:func:`mixture_entropies`; the
    conditional one averaged over v_k's values); gaps of the two largest, divided by
    log |v_k|. ``factors``: which factors enter the mean (all by default; Chen et al. score
    dSprites on scale, orientation and position). Returns ``{"mig", "per_factor" (every
    factor), "mutual_information" (K lists of D, nats)}``."""
    g = torch.Generator().manual_seed(seed)
    rows = sample_factors(sizes, n, g)
    loc, scale = (t.double().cpu() for t in posterior(rows))
    z = loc + scale * torch.randn(loc.shape, generator=g, dtype=torch.float64)
    h = mixture_entropies(z, loc, scale)
    gaps, information = [], []
    for k, size in enumerate(sizes):
        if size < 2:
            raise ValueError(f"factor {k} has {size} value: MIG needs at least 2")
        h_given = torch.zeros_like(h)
        for value in range(size):
            at = rows[:, k] == value
            if at.any():
                h_given += at.double().mean() * mixture_entropies(z[at], loc[at], scale[at])
        info = (h - h_given).clamp(min=0)
        top = (info / math.log(size)).sort(descending=True).values
        gaps.append(float(top[0] - (top[1] if top.numel() > 1 else 0.0)))
        information.append(info.tolist())
    scored = range(len(sizes)) if factors is None else factors
    return {
        "mig": sum(gaps[k] for k in scored) / len(scored),
        "per_factor": gaps,
        "mutual_information": information,
    }


def _fixed_factor_batches(
    sizes: Sequence[int], votes: int, batch: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``votes`` batches of ``batch`` factor rows, each sharing one factor's value: rows
    (votes, batch, K) and which factor was fixed (votes,)."""
    k = torch.randint(0, len(sizes), (votes,), generator=generator)
    rows = sample_factors(sizes, votes * batch, generator).reshape(votes, batch, len(sizes))
    value = torch.stack([torch.randint(0, sizes[int(f)], (1,), generator=generator)[0] for f in k])
    rows[torch.arange(votes), :, k] = value[:, None]
    return rows, k


def factor_vae_score(
    represent: Representation,
    sizes: Sequence[int],
    train_votes: int = 10_000,
    eval_votes: int = 5_000,
    batch: int = 64,
    n_variance: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Kim & Mnih's metric (disentanglement_lib's defaults): codes normalized by their
    standard deviation over ``n_variance`` draws, dimensions without variance dropped."""
    g = torch.Generator().manual_seed(seed)
    scale = represent(sample_factors(sizes, n_variance, g)).double().std(0)
    active = scale > 0

    def votes(count: int) -> tuple[Tensor, Tensor]:
        rows, k = _fixed_factor_batches(sizes, count, batch, g)
        codes = represent(rows.reshape(-1, len(sizes))).double().reshape(count, batch, -1)
        var = (codes[..., active] / scale[active]).var(1)
        return var.argmin(1), k

    d_train, k_train = votes(train_votes)
    table = torch.zeros(int(active.sum()), len(sizes), dtype=torch.long)
    table.index_put_((d_train, k_train), torch.ones_like(d_train), accumulate=True)
    predict = table.argmax(1)
    d_eval, k_eval = votes(eval_votes)
    return {
        "train_accuracy": float((predict[d_train] == k_train).double().mean()),
        "eval_accuracy": float((predict[d_eval] == k_eval).double().mean()),
        "active_dims": int(active.sum()),
    }


def beta_vae_score(
    represent: Representation,
    sizes: Sequence[int],
    train_votes: int = 10_000,
    eval_votes: int = 5_000,
    batch: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Higgins et al.'s metric (disentanglement_lib's defaults): for each vote, ``batch``
    pairs sharing one factor, the mean |z1 - z2| as features, multinomial logistic regression
    (L2, fitted by L-BFGS) predicting the factor."""
    g = torch.Generator().manual_seed(seed)

    def features(count: int) -> tuple[Tensor, Tensor]:
        rows, k = _fixed_factor_batches(sizes, count, batch, g)
        others = sample_factors(sizes, count * batch, g).reshape(count, batch, len(sizes))
        others[torch.arange(count), :, k] = rows[torch.arange(count), 0, k][:, None]
        z1 = represent(rows.reshape(-1, len(sizes))).double()
        z2 = represent(others.reshape(-1, len(sizes))).double()
        return (z1 - z2).abs().reshape(count, batch, -1).mean(1), k

    x_train, k_train = features(train_votes)
    x_eval, k_eval = features(eval_votes)
    weights = _logistic_regression(x_train, k_train, len(sizes))
    predict = lambda x: _affine(x, weights).argmax(1)  # noqa: E731
    return {
        "train_accuracy": float((predict(x_train) == k_train).double().mean()),
        "eval_accuracy": float((predict(x_eval) == k_eval).double().mean()),
    }


def _affine(x: Tensor, w: Tensor) -> Tensor:
    return x @ w[:-1] + w[-1]


def _logistic_regression(x: Tensor, y: Tensor, classes: int, l2: float = 1e-3) -> Tensor:
    """Weights (D + 1, classes) of a multinomial logistic regression on standardized-free
    features (as sklearn's default fit on the raw features)."""
    w = torch.zeros(x.shape[1] + 1, classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(_affine(x, w), y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def encoder_representation(
    encode: Callable[[Tensor], Tensor],
    images_for: Callable[[Tensor], Tensor],
    chunk: int = 2048,
) -> Representation:
    """Factor rows -> codes: render the rows' images and encode them, ``chunk`` at a time."""

    @torch.no_grad()
    def represent(factors: Tensor) -> Tensor:
        parts = [encode(images_for(f)) for f in factors.split(chunk)]
        return torch.cat(parts).cpu()

    return represent


def encoder_posterior(
    posterior: Callable[[Tensor], tuple[Tensor, Tensor]],
    images_for: Callable[[Tensor], Tensor],
    chunk: int = 2048,
) -> Posterior:
    """Factor rows -> (loc, scale) of q(z|x) for their rendered images, ``chunk`` at a time
    (:func:`encoder_representation` of the two stacked)."""
    stacked = encoder_representation(lambda x: torch.stack(posterior(x), 1), images_for, chunk)

    def represent(factors: Tensor) -> tuple[Tensor, Tensor]:
        loc, scale = stacked(factors).unbind(1)
        return loc, scale

    return represent


__all__ = [
    "beta_vae_score",
    "discretize",
    "encoder_posterior",
    "encoder_representation",
    "entropy",
    "factor_vae_score",
    "mig",
    "mig_sampled",
    "mig_score",
    "mixture_entropies",
    "mutual_information",
    "sample_factors",
]
