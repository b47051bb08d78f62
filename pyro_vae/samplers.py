"""Ex-post latent samplers: a density fitted to a trained run's codes, drawn from instead of the
prior (``pyro-vae sample CKPT --sampler gmm:10``).

A VAE's aggregate posterior q(z) = E_x q(z | x) rarely fills its prior: draws from p(z) land
in holes q(z) never visits, and decode to blurred or implausible images. Fitting a density to
the codes of the training data and sampling from it (Ghosh et al. 2020's ex-post density
estimation; pythae's GMM sampler) draws where the decoder was trained. Samplers register
themselves in :data:`SAMPLERS`; a spec is ``NAME`` or ``NAME:K``.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

import torch
from torch import Tensor

from .registry import Registry

MAX_CODES = 20_000  # training codes a sampler is fitted to (chosen at random beyond it)


class Sampler(Protocol):
    name: str

    def fit(self, codes: Tensor) -> Sampler: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


class GaussianMixture:
    """A mixture of K full-covariance Gaussians fitted to codes (n, d) by EM, from a k-means++
    start; ``ridge`` is added to each covariance's diagonal (relative to the codes' variance)
    so that no component collapses onto a point. :attr:`history` holds the mean log-likelihood
    per datum after each iteration (EM never lowers it)."""

    def __init__(
        self, components: int = 10, iterations: int = 100, ridge: float = 1e-4, seed: int = 0
    ) -> None:
        if components < 1:
            raise ValueError(f"gmm:K needs K >= 1 components; got {components}")
        self.k, self.iterations, self.ridge, self.seed = components, iterations, ridge, seed
        self.name = f"gmm:{components}"
        self.history: list[float] = []

    def fit(self, codes: Tensor) -> GaussianMixture:
        x = codes.detach().double()
        n, d = x.shape
        if n < self.k:
            raise ValueError(f"{self.name} needs at least {self.k} codes to fit; got {n}")
        gen = torch.Generator().manual_seed(self.seed)
        self.means = kmeans_pp(x, self.k, gen)
        eps = self.ridge * x.var(0).mean().clamp_min(1e-12) * torch.eye(d, dtype=x.dtype)
        self.covs = (torch.cov(x.T).reshape(d, d) + eps).expand(self.k, d, d).clone()
        self.log_weights = torch.full((self.k,), -math.log(self.k), dtype=x.dtype)
        self.history = []
        for _ in range(self.iterations):
            joint = self._joint(x)  # (n, K): log pi_k + log N(x; mu_k, S_k)
            total = torch.logsumexp(joint, 1)
            self.history.append(total.mean().item())
            resp = (joint - total[:, None]).exp()  # E step
            mass = resp.sum(0).clamp_min(1e-10)  # M step
            self.log_weights = (mass / n).log()
            self.means = (resp.T @ x) / mass[:, None]
            centred = x[None] - self.means[:, None]  # (K, n, d)
            self.covs = (
                torch.einsum("kn,kni,knj->kij", resp.T, centred, centred) / mass[:, None, None]
                + eps
            )
            if len(self.history) > 1 and abs(self.history[-1] - self.history[-2]) < 1e-7:
                break
        return self

    def _components(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covs)

    def _joint(self, x: Tensor) -> Tensor:
        return self.log_weights + self._components().log_prob(x[:, None, :])

    def log_prob(self, codes: Tensor) -> Tensor:
        """log of the fitted density at each code, (n,)."""
        return torch.logsumexp(self._joint(codes.double()), 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        which = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)[which]
        noise = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=chol.dtype)
        return (self.means[which] + (chol @ noise).squeeze(-1)).float()


def kmeans_pp(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding: k rows of ``x``, each drawn with probability proportional to its
    squared distance from those chosen before."""
    chosen = [x[torch.randint(len(x), (1,), generator=gen)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(chosen)).pow(2).min(1).values
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / len(d2))
        chosen.append(x[torch.multinomial(p.float(), 1, generator=gen)].squeeze(0))
    return torch.stack(chosen)


SAMPLERS: Registry = Registry("latent sampler")
SAMPLERS.register(
    "gmm", GaussianMixture, "a K-component full-covariance Gaussian mixture fitted by EM"
)


def parse(spec: str) -> tuple[str, int | None]:
    """``"gmm:10"`` -> ("gmm", 10); ``"prior"`` -> ("prior", None)."""
    m = re.fullmatch(r"([a-z][a-z0-9-]*)(?::(\d+))?", spec.strip())
    if m is None or (m.group(1) != "prior" and m.group(1) not in SAMPLERS):
        raise ValueError(
            f"--sampler {spec!r}: choose prior, or one of {', '.join(SAMPLERS)} as NAME:K "
            "(e.g. gmm:10)"
        )
    return m.group(1), None if m.group(2) is None else int(m.group(2))


def fitted(spec: str, codes: Tensor, seed: int = 0) -> Sampler:
    """The sampler ``spec`` names, fitted to ``codes`` (n, d) (at most :data:`MAX_CODES`,
    chosen with ``seed``)."""
    name, count = parse(spec)
    if name == "prior":
        raise ValueError("--sampler prior draws from the model's prior: nothing to fit")
    if codes.dim() != 2:
        raise ValueError(
            f"--sampler {spec}: the run's codes must be one array (n, d); this model has "
            "several latent sites (fit a sampler to one of them in Python)"
        )
    if len(codes) > MAX_CODES:
        keep = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))
        codes = codes[keep[:MAX_CODES]]
    factory = SAMPLERS.choose(name)
    sampler = factory(count, seed=seed) if count is not None else factory(seed=seed)
    return sampler.fit(codes.cpu())
