"""Objectives that match the aggregate posterior q(z) to the prior by maximum mean discrepancy:
WAE-MMD (Tolstikhin et al. 2018) and InfoVAE (Zhao et al. 2019), as ``--elbo wae-mmd`` and
``--elbo info-mmd``.

For a batch x_1..n with codes z_i ~ q(z | x_i) and as many prior draws z̃_j ~ p(z), the unbiased
estimate of MMD²(q(z), p(z)) in a kernel k (U-statistic)::

    MMD² = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(z̃_i, z̃_j)] - 2/n² sum_{i,j} k(z_i, z̃_j)

and the objectives (per datum, to be maximised)::

    WAE-MMD:  E_q[log p(x | z)]                                  - λ MMD²
    InfoVAE:  E_q[log p(x | z)] - (1 - α) KL(q(z | x) || p(z)) - (α + λ - 1) MMD²

(λ ``--mmd-weight``, α ``--info-alpha``). The batch's MMD² enters Pyro's summed loss n times,
so that λ weighs it against the per-datum terms as the papers' batch means do. The kernel
(``--mmd-kernel``) is the inverse multiquadratic C / (C + |z - z̃|²) summed over the scales
C = 2 d c, c in {0.1, 0.2, 0.5, 1, 2, 5, 10} (WAE's), or the Gaussian exp(-|z - z̃|² / (2 d)).
The codes are those of the model's latent site "z" (``--model vae``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import Trace_ELBO
from torch import Tensor

from .objectives import ELBOS
from .registry import Options, non_negative, option

KERNELS = ("imq", "rbf")
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def kernel(x: Tensor, y: Tensor, name: str = "imq") -> Tensor:
    """The kernel matrix k(x_i, y_j), (n, m), for codes (n, d) and (m, d)."""
    d2 = torch.cdist(x, y).pow(2)
    dim = x.shape[-1]
    if name == "rbf":
        return torch.exp(-d2 / (2 * dim))
    return sum(2 * dim * c / (2 * dim * c + d2) for c in IMQ_SCALES)  # type: ignore[return-value]


def mmd2(x: Tensor, y: Tensor, name: str = "imq") -> Tensor:
    """The unbiased (U-statistic) estimate of MMD²(P, Q) from draws x ~ P (n, d), y ~ Q (m, d)."""
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the MMD estimate needs at least 2 codes and 2 prior draws per batch")
    kxx, kyy, kxy = kernel(x, x, name), kernel(y, y, name), kernel(x, y, name)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * kxy.mean()


@dataclass
class MMDOptions(Options):
    """Options of the MMD objectives."""

    mmd_weight: float = option(
        100.0, "--elbo wae-mmd / info-mmd: λ, the weight of MMD²(q(z), p(z)) per datum"
    )
    mmd_kernel: str = option(
        "imq", f"--elbo wae-mmd / info-mmd: kernel of the MMD, {' or '.join(KERNELS)}"
    )
    info_alpha: float = option(
        0.0, "--elbo info-mmd: α; the KL weighs 1 - α and the MMD α + λ - 1 (α = 1: no KL)"
    )

    def validate(self) -> None:
        non_negative(self, "mmd_weight")
        if self.mmd_kernel not in KERNELS:
            raise ValueError(
                f"mmd_kernel must be one of {', '.join(KERNELS)}; got {self.mmd_kernel!r}"
            )
        if not (math.isfinite(self.info_alpha) and 0 <= self.info_alpha <= 1):
            raise ValueError(f"info_alpha must lie in [0, 1] (e.g. 0); got {self.info_alpha}")


class MMDObjective(Trace_ELBO):
    """WAE-MMD (``kl_weight`` None: no latent terms) or InfoVAE (latent terms weighted by
    1 - α); see the module's formulas."""

    def __init__(self, name: str, num_particles: int = 1) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=1)
        self.name = name
        self.weight, self.kernel_name, self.alpha = 100.0, "imq", 0.0

    def configure(self, config: Any, dataset_size: int) -> None:
        self.weight, self.kernel_name = config.mmd_weight, config.mmd_kernel
        self.alpha = config.info_alpha

    def trace_key(self) -> tuple:
        """What a recorded graph (:mod:`pyro_vae.traced`) depends on."""
        return (self.name, self.weight, self.kernel_name, self.alpha)

    def coefficients(self) -> tuple[float, float]:
        """(weight of the latent log-density terms, weight of n MMD²)."""
        if self.name == "wae-mmd":
            return 0.0, self.weight
        return 1.0 - self.alpha, self.alpha + self.weight - 1.0

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        latent_weight, mmd_weight = self.coefficients()
        loss: Tensor | float = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            if "z" not in guide_trace.nodes or "z" not in model_trace.nodes:
                raise ValueError(
                    f"--elbo {self.name} matches the codes of the latent site 'z' to its prior: "
                    "use --model vae"
                )
            observed = model_trace.log_prob_sum(lambda _, site: site["is_observed"])
            latent = model_trace.log_prob_sum(lambda _, site: not site["is_observed"])
            latent = latent - guide_trace.log_prob_sum()
            z = guide_trace.nodes["z"]["value"]
            prior = model_trace.nodes["z"]["fn"]
            try:
                draws = prior.sample()
            except NotImplementedError:
                raise ValueError(
                    f"--elbo {self.name} compares the codes with draws from the prior, and "
                    f"{type(prior).__name__} has none (the flat prior is improper): use a "
                    "proper prior"
                ) from None
            codes, draws = z.reshape(-1, z.shape[-1]), draws.reshape(-1, z.shape[-1])
            # a batch of one (an epoch's remainder) has no pairs to estimate MMD² from
            n = codes.shape[0]
            penalty = n * mmd2(codes, draws, self.kernel_name) if n > 1 else codes.sum() * 0
            loss = loss - observed - latent_weight * latent + mmd_weight * penalty
        return loss / self.num_particles

    def loss(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


ELBOS.register(
    "wae-mmd",
    lambda k: MMDObjective("wae-mmd", k),
    "WAE-MMD (Tolstikhin et al. 2018): E log p(x|z) - --mmd-weight λ MMD²(q(z), p(z)), no KL",
    options=MMDOptions,
)
ELBOS.register(
    "info-mmd",
    lambda k: MMDObjective("info-mmd", k),
    "InfoVAE (Zhao et al. 2019): E log p(x|z) - (1 - α) KL - (α + λ - 1) MMD²(q(z), p(z))",
    options=MMDOptions,
)
