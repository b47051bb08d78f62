"""Objectives that match the aggregate posterior q(z) = E_x q(z | x) to the prior through a
statistic of the batch's codes: MMD (WAE-MMD, Tolstikhin et al. 2018; InfoVAE, Zhao et al.
2019), the sliced Wasserstein distance (SWAE, Kolouri et al. 2019) and the covariance of the
codes (DIP-VAE I and II, Kumar et al. 2018): ``--elbo wae-mmd``, ``info-mmd``, ``swae``,
``dip-i``, ``dip-ii``.

For a batch x_1..n with codes z_i ~ q(z | x_i) and as many prior draws z̃_j ~ p(z), the unbiased
estimate of MMD²(q(z), p(z)) in a kernel k (U-statistic)::

    MMD² = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(z̃_i, z̃_j)] - 2/n² sum_{i,j} k(z_i, z̃_j)

the sliced Wasserstein distance over L directions θ_l drawn uniformly on the sphere::

    SW² = 1/L sum_l 1/n sum_i (sort(θ_l·z)_i - sort(θ_l·z̃)_i)²

and DIP's penalty on a covariance C of the codes, pushed to the prior's identity::

    DIP(C) = λ_od sum_{i != j} C_ij² + λ_d sum_i (C_ii - 1)²
    DIP-I:  C = Cov_x[μ(x)]                     (the covariance of the guide's means)
    DIP-II: C = Cov_x[μ(x)] + E_x[diag σ²(x)]   (the covariance of q(z) itself)

The objectives (per datum, to be maximised)::

    WAE-MMD:  E_q[log p(x | z)]                                  - λ MMD²
    InfoVAE:  E_q[log p(x | z)] - (1 - α) KL(q(z | x) || p(z)) - (α + λ - 1) MMD²
    SWAE:     E_q[log p(x | z)]                                  - λ SW²
    DIP-VAE:  E_q[log p(x | z)] - KL(q(z | x) || p(z))           - DIP(C)

(λ ``--mmd-weight`` / ``--swd-weight``, α ``--info-alpha``, λ_od and λ_d ``--dip-offdiag``,
``--dip-diag``). The batch's statistic enters Pyro's summed loss n times, so that its weight
counts against the per-datum terms as the papers' batch means do. The MMD kernel
(``--mmd-kernel``) is the inverse multiquadratic C / (C + |z - z̃|²) summed over the scales
C = 2 d c, c in {0.1, 0.2, 0.5, 1, 2, 5, 10} (WAE's), or the Gaussian exp(-|z - z̃|² / (2 d)).
The codes are those of the model's latent site "z" (``--model vae``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .objectives import ELBOS, DifferentiableObjective
from .registry import Options, at_least_one, non_negative, option

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


class AggregateObjective(DifferentiableObjective):
    """The reconstruction term, the latent log-density terms weighted by
    :meth:`coefficients` ``[0]``, and n times a statistic of the batch's codes
    (:meth:`penalty`) weighted by ``[1]``; see the module's formulas."""

    name = ""

    def __init__(self, num_particles: int = 1) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=1)

    def coefficients(self) -> tuple[float, float]:
        """(weight of the latent log-density terms, weight of n times the penalty)."""
        raise NotImplementedError

    def penalty(self, z: Tensor, posterior: Any, prior: Any) -> Tensor:
        """The batch's statistic from its codes (n, d), the guide's q(z | x) and the prior."""
        raise NotImplementedError

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        latent_weight, penalty_weight = self.coefficients()
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
            codes = z.reshape(-1, z.shape[-1])
            # a batch of one (an epoch's remainder) has no spread to take a statistic of
            n = codes.shape[0]
            fns = guide_trace.nodes["z"]["fn"], model_trace.nodes["z"]["fn"]
            penalty = n * self.penalty(codes, *fns) if n > 1 else codes.sum() * 0
            loss = loss - observed - latent_weight * latent + penalty_weight * penalty
        return loss / self.num_particles


def prior_draws(prior: Any, name: str, like: Tensor) -> Tensor:
    """As many draws from the prior as there are codes, (n, d); one line for an improper
    prior."""
    try:
        draws = prior.sample()
    except NotImplementedError:
        raise ValueError(
            f"--elbo {name} compares the codes with draws from the prior, and "
            f"{type(prior).__name__} has none (the flat prior is improper): use a proper prior"
        ) from None
    return draws.reshape(-1, like.shape[-1])


class MMDObjective(AggregateObjective):
    """WAE-MMD (no latent terms) or InfoVAE (latent terms weighted by 1 - α)."""

    def __init__(self, name: str, num_particles: int = 1) -> None:
        super().__init__(num_particles)
        self.name = name
        self.weight, self.kernel_name, self.alpha = 100.0, "imq", 0.0

    def configure(self, config: Any, dataset_size: int) -> None:
        self.weight, self.kernel_name = config.mmd_weight, config.mmd_kernel
        self.alpha = config.info_alpha

    def trace_key(self) -> tuple:
        """What a recorded graph (:mod:`pyro_vae.traced`) depends on."""
        return (self.name, self.weight, self.kernel_name, self.alpha)

    def coefficients(self) -> tuple[float, float]:
        if self.name == "wae-mmd":
            return 0.0, self.weight
        return 1.0 - self.alpha, self.alpha + self.weight - 1.0

    def penalty(self, z: Tensor, posterior: Any, prior: Any) -> Tensor:
        return mmd2(z, prior_draws(prior, self.name, z), self.kernel_name)


def sliced_wasserstein2(x: Tensor, y: Tensor, directions: Tensor) -> Tensor:
    """SW²(P, Q) from equally many draws x ~ P, y ~ Q (n, d), over unit ``directions`` (L, d):
    the mean over directions of the 1-D squared Wasserstein distance of the projections (the
    sorted projections matched in order)."""
    if x.shape != y.shape:
        shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(f"SW² compares equally many draws; got {shapes}")
    px = (x @ directions.T).sort(0).values
    py = (y @ directions.T).sort(0).values
    return (px - py).pow(2).mean()


def random_directions(count: int, dim: int, like: Tensor) -> Tensor:
    """``count`` directions drawn uniformly on the unit sphere in ``dim`` dimensions."""
    theta = torch.randn(count, dim, dtype=like.dtype, device=like.device)
    return theta / theta.norm(dim=-1, keepdim=True)


class SWAEObjective(AggregateObjective):
    """SWAE: the reconstruction term and λ SW²(q(z), p(z)), no KL."""

    name = "swae"

    def __init__(self, num_particles: int = 1) -> None:
        super().__init__(num_particles)
        self.weight, self.projections = 10.0, 50

    def configure(self, config: Any, dataset_size: int) -> None:
        self.weight, self.projections = config.swd_weight, config.swd_projections

    def trace_key(self) -> tuple:
        return (self.name, self.weight, self.projections)

    def coefficients(self) -> tuple[float, float]:
        return 0.0, self.weight

    def penalty(self, z: Tensor, posterior: Any, prior: Any) -> Tensor:
        draws = prior_draws(prior, self.name, z)
        return sliced_wasserstein2(z, draws, random_directions(self.projections, z.shape[-1], z))


def dip_penalty(cov: Tensor, offdiag: float, diag: float) -> Tensor:
    """λ_od sum_{i != j} C_ij² + λ_d sum_i (C_ii - 1)²."""
    d = cov.diagonal()
    return offdiag * (cov.pow(2).sum() - d.pow(2).sum()) + diag * (d - 1).pow(2).sum()


def normal_moments(posterior: Any, name: str, dim: int) -> tuple[Tensor, Tensor]:
    """The guide's means and variances (n, d), or one line for a guide that has none."""
    base = getattr(posterior, "base_dist", posterior)
    if not isinstance(base, torch.distributions.Normal):
        raise ValueError(
            f"--elbo {name} regularises the covariance of the guide's Normal means; the guide's "
            f"z is {type(base).__name__}: use --guide normal"
        )
    loc = base.loc.expand(base.batch_shape).reshape(-1, dim)
    return loc, base.scale.expand(base.batch_shape).reshape(-1, dim).pow(2)


class DIPObjective(AggregateObjective):
    """DIP-VAE I (covariance of the means) or II (covariance of q(z)), on top of the ELBO."""

    def __init__(self, name: str, num_particles: int = 1) -> None:
        super().__init__(num_particles)
        self.name = name
        self.offdiag, self.diag = 10.0, 10.0

    def configure(self, config: Any, dataset_size: int) -> None:
        self.offdiag, self.diag = config.dip_offdiag, config.dip_diag

    def trace_key(self) -> tuple:
        return (self.name, self.offdiag, self.diag)

    def coefficients(self) -> tuple[float, float]:
        return 1.0, 1.0

    def penalty(self, z: Tensor, posterior: Any, prior: Any) -> Tensor:
        loc, var = normal_moments(posterior, self.name, z.shape[-1])
        centred = loc - loc.mean(0)
        cov = centred.T @ centred / loc.shape[0]  # Cov_x[μ(x)], the batch as p(x)
        if self.name == "dip-ii":
            cov = cov + torch.diag(var.mean(0))
        return dip_penalty(cov, self.offdiag, self.diag)


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


@dataclass
class SWAEOptions(Options):
    """Options of SWAE."""

    swd_weight: float = option(10.0, "--elbo swae: λ, the weight of SW²(q(z), p(z)) per datum")
    swd_projections: int = option(50, "--elbo swae: directions of the sliced Wasserstein distance")

    def validate(self) -> None:
        non_negative(self, "swd_weight")
        at_least_one(self, "swd_projections")


@dataclass
class DIPOptions(Options):
    """Options of DIP-VAE."""

    dip_offdiag: float = option(10.0, "--elbo dip-i / dip-ii: λ_od, weight of the off-diagonal")
    dip_diag: float = option(10.0, "--elbo dip-i / dip-ii: λ_d, weight of the diagonal's gap to 1")

    def validate(self) -> None:
        non_negative(self, "dip_offdiag", "dip_diag")


ELBOS.register(
    "swae",
    SWAEObjective,
    "SWAE (Kolouri et al. 2019): E log p(x|z) - --swd-weight λ SW²(q(z), p(z)), no KL",
    options=SWAEOptions,
)
ELBOS.register(
    "dip-i",
    lambda k: DIPObjective("dip-i", k),
    "DIP-VAE-I (Kumar et al. 2018): the ELBO - λ_od, λ_d penalties on Cov[mean of q(z|x)]",
    options=DIPOptions,
)
ELBOS.register(
    "dip-ii",
    lambda k: DIPObjective("dip-ii", k),
    "DIP-VAE-II (Kumar et al. 2018): the ELBO - λ_od, λ_d penalties on the covariance of q(z)",
    options=DIPOptions,
)
