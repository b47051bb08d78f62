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


class Standardised:
    """What the trained samplers share: codes standardised per coordinate before fitting (so
    one learning rate and one initialisation suit every run's scale), a fit by Adam on minibatches
    of the codes with a fixed seed, and draws mapped back. :attr:`history` holds the mean
    training objective per datum (log-likelihood or ELBO of the standardised codes) every 100
    steps."""

    steps, batch_size, lr = 2000, 256, 1e-3

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.history: list[float] = []

    def module(self, dim: int) -> torch.nn.Module:
        raise NotImplementedError

    def objective(self, u: Tensor) -> Tensor:
        """The mean per datum to maximise on standardised codes ``u``."""
        raise NotImplementedError

    def fit(self, codes: Tensor) -> Standardised:
        x = codes.detach().float()
        if len(x) < 2:
            raise ValueError(f"{self.name} needs at least 2 codes to fit; got {len(x)}")
        self.loc, self.scale = x.mean(0), x.std(0).clamp_min(1e-6)
        u = (x - self.loc) / self.scale
        # fitted wherever it is called, under no_grad too (a script scoring a trained run)
        with torch.random.fork_rng(), torch.enable_grad():
            torch.manual_seed(self.seed)
            self.net = self.module(x.shape[1])
            optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
            self.history = []
            for step in range(self.steps):
                batch = u[torch.randint(len(u), (min(self.batch_size, len(u)),))]
                loss = -self.objective(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if step % 100 == 99:
                    self.history.append(-loss.item())
        self.net.eval()
        return self

    def draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` standardised draws."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.draw(n, generator) * self.scale + self.loc


class AutoregressiveFlow(Standardised):
    """A masked autoregressive flow (Papamakarios et al. 2017) of K layers fitted to the codes
    by maximum likelihood: Pyro's ``AffineAutoregressive`` transforms, each used in the
    direction that scores codes in one pass (codes -> noise) and draws sequentially, the
    coordinates reversed between layers. Its :meth:`log_prob` is the fitted density."""

    def __init__(self, layers: int = 4, seed: int = 0) -> None:
        if layers < 1:
            raise ValueError(f"maf:K needs K >= 1 layers; got {layers}")
        super().__init__(seed)
        self.layers, self.name = layers, f"maf:{layers}"

    def module(self, dim: int) -> torch.nn.Module:
        from pyro.distributions.transforms import AffineAutoregressive, Permute
        from pyro.nn import AutoRegressiveNN

        self.dim = dim
        width = max(64, 4 * dim)
        layers = [
            AffineAutoregressive(AutoRegressiveNN(dim, [width, width])) for _ in range(self.layers)
        ]
        self.transforms: list = []  # noise -> codes: the layers, coordinates reversed between
        for i, layer in enumerate(layers):
            self.transforms.append(layer)
            if i < self.layers - 1 and dim > 1:
                self.transforms.append(Permute(torch.arange(dim - 1, -1, -1)))
        return torch.nn.ModuleList(layers)

    def _flow(self) -> torch.distributions.TransformedDistribution:
        # each transform maps noise to codes in its fast direction inverted: noise <- codes
        base = torch.distributions.Independent(
            torch.distributions.Normal(torch.zeros(self.dim), torch.ones(self.dim)), 1
        )
        return torch.distributions.TransformedDistribution(
            base,
            [t.inv for t in reversed(self.transforms)],
        )

    def objective(self, u: Tensor) -> Tensor:
        return self._flow().log_prob(u).mean()

    @torch.no_grad()
    def log_prob(self, codes: Tensor) -> Tensor:
        """log of the fitted density at each code, (n,) (the standardisation's Jacobian in)."""
        u = (codes.float() - self.loc) / self.scale
        return self._flow().log_prob(u) - self.scale.log().sum()

    def draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        u = torch.randn(n, self.dim, generator=generator)
        for t in reversed(self.transforms):  # each in its sequential direction: noise -> codes
            u = t.inv(u)
        return u


class TwoStageVAE(Standardised):
    """The second stage of Dai & Wipf (2019): a VAE fitted to the codes, a Pyro model and guide
    trained by SVI (``Trace_ELBO``)::

        u ~ N(0, I_d),  z ~ N(g(u), γ² I)      (γ learned: the second stage's own scale)
        q(u | z) = N(m(z), diag s(z)²)

    (g, m, s: MLPs of width K). Draws are z = g(u) + γ ε, u, ε ~ N(0, I): where the first
    stage's q(z) does not fill its prior, the second stage's does (γ falls towards 0 where the
    codes lie near a manifold, and stays where they are noise)."""

    def __init__(self, width: int = 256, seed: int = 0) -> None:
        if width < 1:
            raise ValueError(f"two-stage:K needs a width K >= 1; got {width}")
        super().__init__(seed)
        self.width, self.name = width, f"two-stage:{width}"

    def module(self, dim: int) -> torch.nn.Module:
        self.dim, w = dim, self.width
        net = torch.nn.Module()
        net.decoder = torch.nn.Sequential(
            torch.nn.Linear(dim, w), torch.nn.ELU(), torch.nn.Linear(w, w), torch.nn.ELU(),
            torch.nn.Linear(w, dim),
        )  # fmt: skip
        net.encoder = torch.nn.Sequential(
            torch.nn.Linear(dim, w), torch.nn.ELU(), torch.nn.Linear(w, w), torch.nn.ELU(),
            torch.nn.Linear(w, 2 * dim),
        )  # fmt: skip
        net.log_gamma = torch.nn.Parameter(torch.zeros(()))
        return net

    def model(self, z: Tensor) -> None:
        import pyro
        import pyro.distributions as dist

        with pyro.plate("codes", len(z)):
            u = pyro.sample("u", dist.Normal(torch.zeros_like(z), 1.0).to_event(1))
            scale = self.net.log_gamma.exp()
            pyro.sample("z", dist.Normal(self.net.decoder(u), scale).to_event(1), obs=z)

    def guide(self, z: Tensor) -> None:
        import pyro
        import pyro.distributions as dist

        loc, raw = self.net.encoder(z).chunk(2, -1)
        with pyro.plate("codes", len(z)):
            pyro.sample("u", dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4).to_event(1))

    def objective(self, u: Tensor) -> Tensor:
        from pyro.infer import Trace_ELBO

        return -Trace_ELBO().differentiable_loss(self.model, self.guide, u) / len(u)

    def draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        u, noise = torch.randn(2, n, self.dim, generator=generator)
        return self.net.decoder(u) + self.net.log_gamma.exp() * noise


SAMPLERS: Registry = Registry("latent sampler")
SAMPLERS.register(
    "gmm", GaussianMixture, "a K-component full-covariance Gaussian mixture fitted by EM"
)
SAMPLERS.register(
    "maf", AutoregressiveFlow, "a K-layer masked autoregressive flow fitted by maximum likelihood"
)
SAMPLERS.register(
    "two-stage", TwoStageVAE, "a second VAE on the codes, MLPs of width K (Dai & Wipf 2019)"
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
