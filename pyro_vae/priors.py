"""Priors p(z) over the latent code.

A prior is anything that, called with no arguments, returns a distribution with
``event_shape == (z_dim,)`` and empty batch shape. Project priors are ``nn.Module`` s so
they follow the model across devices and, when they have parameters, are learned with it.
Add a prior by writing one such class and, for configs and the CLI, one ``PRIORS.register``
line (or name it by import path: ``--prior mypkg.priors:MyPrior``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Distribution, constraints

from .registry import Options, Registry, at_least_one, option
from .spherical import HypersphericalUniform

PriorLike = nn.Module | Distribution | Callable[[], Distribution]


class StandardNormal(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self) -> Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class Flat(nn.Module):
    """p(z) ∝ 1 on R^z_dim: an improper prior (log p(z) = 0) that cannot be sampled.

    With ``guides.DeltaGuide`` it turns the ELBO into a plain autoencoder's objective.
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim

    def forward(self) -> Distribution:
        return dist.ImproperUniform(constraints.real, (), (self.z_dim,))


class SphericalUniform(nn.Module):
    """p(z) uniform on the unit hypersphere S^{z_dim - 1} (Davidson et al. 2018): codes are
    directions, with a guide whose z lies there too (``--guide spherical``)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.register_buffer("_device", torch.zeros(0), persistent=False)

    def forward(self) -> Distribution:
        return HypersphericalUniform(self.z_dim, device=self._device.device)


class LearnedNormal(nn.Module):
    """p(z) = N(m, diag(s)^2) with m and log s learned."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(z_dim))
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self) -> Distribution:
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


class DiagonalNormalMixture(dist.MixtureSameFamily):
    """A mixture of K diagonal Normals in D dimensions whose ``log_prob`` expands
    sum_d (z_d - m_kd)^2 / s_kd^2 into matrix products (in float64, against cancellation).

    The generic ``MixtureSameFamily.log_prob`` broadcasts every value against every component
    and dimension, N x K x D numbers: a VampPrior's 500 components x 50 dimensions x 8192
    values is 800 MB per call and dominates the importance-sampled evaluation. Here the
    largest intermediate is N x K. Other component shapes fall back to the generic method.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        comp = self.component_distribution
        normal = getattr(comp, "base_dist", None)
        if not isinstance(normal, torch.distributions.Normal) or (
            getattr(comp, "reinterpreted_batch_ndims", 0) != 1
        ):
            return super().log_prob(value)
        # Pyro's plates expand the mixture to the batch shape without copying: one (K, D) set
        # of parameters viewed with stride 0 along the batch dimensions
        loc, scale = _unexpanded(normal.loc, 2), _unexpanded(normal.scale, 2)
        logits = _unexpanded(self.mixture_distribution.logits, 1)
        if loc is None or scale is None or logits is None or scale.shape != loc.shape:
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        d = loc.shape[-1]
        loc, scale = loc.double(), scale.double()
        precision = scale.pow(-2)  # (K, D)
        z = value.reshape(-1, d).double()  # (N, D)
        quad = (
            (z * z) @ precision.T - 2.0 * z @ (loc * precision).T + (loc * loc * precision).sum(-1)
        )  # (N, K)
        log_norm = scale.log().sum(-1) + 0.5 * d * math.log(2 * math.pi)
        log_weights = torch.log_softmax(logits.double(), -1)
        lp = torch.logsumexp(log_weights - log_norm - 0.5 * quad, -1)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return lp.reshape(value.shape[:-1]).to(value.dtype).expand(shape)


def _unexpanded(t: torch.Tensor, dims: int) -> torch.Tensor | None:
    """The trailing ``dims`` dimensions of ``t`` if its leading ones are broadcast (stride 0
    or size 1), else None."""
    lead = t.dim() - dims
    if lead < 0 or any(
        st != 0 and n != 1 for st, n in zip(t.stride()[:lead], t.shape[:lead], strict=True)
    ):
        return None
    return t[(0,) * lead] if lead else t


class MixtureOfGaussians(nn.Module):
    """p(z) = sum_k pi_k N(z; m_k, diag(s_k)^2), K components; weights, means and scales
    learned. Means start spread as draws from N(0, I) so the components can separate."""

    def __init__(self, z_dim: int, components: int = 10) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, z_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, z_dim))

    def forward(self) -> Distribution:
        return DiagonalNormalMixture(
            dist.Categorical(logits=self.logits),
            dist.Normal(self.loc, self.log_scale.exp()).to_event(1),
        )


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z | u_k): the guide's posteriors at K learned pseudo-inputs
    (Tomczak & Welling 2018). u_k = sigmoid(w_k) keeps the pseudo-inputs in [0, 1].

    The prior calls ``guide.posterior``; the guide is held by reference (not registered as a
    submodule), so its parameters are saved and trained once, as the guide's.
    """

    def __init__(self, guide: nn.Module, x_dim: int, components: int = 500) -> None:
        super().__init__()
        if not hasattr(guide, "posterior"):
            raise TypeError("VampPrior needs a guide with a posterior(x) method")
        with torch.no_grad():
            q = guide.posterior(torch.zeros(1, x_dim))
        if isinstance(getattr(q, "base_dist", q), dist.Delta):
            raise ValueError(
                "VampPrior mixes the guide's posteriors, so it needs a guide with a density; "
                "the delta guide is a point mass: use --guide normal or fullcov"
            )
        if isinstance(q, torch.distributions.TransformedDistribution):
            raise ValueError(
                "VampPrior evaluates the guide's posteriors at arbitrary z, but a flow guide's "
                "density is cheap only at its own samples: use --guide normal or fullcov"
            )
        object.__setattr__(self, "guide", guide)
        self.pseudo_logits = nn.Parameter(torch.randn(components, x_dim) * 0.1 - 2.0)

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def forward(self) -> Distribution:
        components = self.guide.posterior(self.pseudo_inputs())
        k = self.pseudo_logits.shape[0]
        mixing = dist.Categorical(logits=torch.zeros(k, device=self.pseudo_logits.device))
        return DiagonalNormalMixture(mixing, components)


class Laplace(nn.Module):
    """p(z) = prod_i Laplace(z_i; 0, 1/sqrt 2): unit variance, heavier tails than N(0, I)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.full((z_dim,), 0.5**0.5))

    def forward(self) -> Distribution:
        return dist.Laplace(self.loc, self.scale).to_event(1)


class StudentT(nn.Module):
    """p(z) = prod_i StudentT(z_i; df, 0, 1): heavy tails, df degrees of freedom."""

    def __init__(self, z_dim: int, df: float = 5.0) -> None:
        super().__init__()
        self.register_buffer("df", torch.full((z_dim,), float(df)))
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self) -> Distribution:
        return dist.StudentT(self.df, self.loc, self.scale).to_event(1)


class FixedPrior:
    """Wraps a user's ``torch.distributions.Distribution`` as a prior (not learned).

    The distribution is not moved with ``model.to(device)``: build it on the data's device.
    """

    def __init__(self, distribution: Distribution) -> None:
        self.distribution = distribution

    def __call__(self) -> Distribution:
        return self.distribution

    def __repr__(self) -> str:
        return f"FixedPrior({self.distribution!r})"


def as_prior(prior: PriorLike | None, z_dim: int) -> nn.Module | Callable[[], Distribution]:
    """Check ``prior`` and return a zero-argument callable producing p(z).

    Accepts a project prior, any ``nn.Module`` whose call returns the distribution (its
    parameters are then learned), a plain callable, or a ``torch.distributions.Distribution``.
    """
    if prior is None:
        prior = StandardNormal(z_dim)
    if isinstance(prior, Distribution):
        prior = FixedPrior(prior)
    if not callable(prior):
        raise TypeError(
            f"prior must be a torch Distribution, an nn.Module or a callable returning one; "
            f"got {type(prior).__name__}"
        )
    with torch.no_grad():
        d = prior()
    if not isinstance(d, Distribution):
        raise TypeError(f"prior() must return a torch Distribution; got {type(d).__name__}")
    if tuple(d.event_shape) != (z_dim,) or tuple(d.batch_shape) != ():
        raise ValueError(
            f"prior must have event_shape ({z_dim},) and batch_shape (); got event_shape "
            f"{tuple(d.event_shape)}, batch_shape {tuple(d.batch_shape)} "
            "(use .to_event(1) on a per-dimension distribution)"
        )
    return prior


# Priors by name for configs and the CLI. A factory is called with those of ``z_dim``,
# ``x_dim``, ``components`` and ``guide`` its signature names (see registry.construct), and so
# is a user's class named by import path (``--prior mypkg.priors:MoG``).
def temper(d: Distribution, temperature: float) -> Distribution:
    """``d`` with its spread scaled by ``temperature`` (sampling at a temperature, as Kingma &
    Dhariwal's Glow and NVAE do): the scale of a location-scale prior (Normal, Laplace,
    Student-t), of each component of a mixture (mog, vampprior). 1 returns ``d``; a prior
    without a scale (flat, a user's) is refused in one line."""
    if temperature == 1:
        return d
    if isinstance(d, torch.distributions.Independent):
        return temper(d.base_dist, temperature).to_event(d.reinterpreted_batch_ndims)
    if isinstance(d, torch.distributions.MixtureSameFamily):
        comp = temper(d.component_distribution, temperature)
        return dist.MixtureSameFamily(d.mixture_distribution, comp)
    if isinstance(d, torch.distributions.StudentT):
        return dist.StudentT(d.df, d.loc, d.scale * temperature)
    if isinstance(d, torch.distributions.Normal | torch.distributions.Laplace):
        return type(d)(d.loc, d.scale * temperature)
    raise ValueError(
        f"--temperature scales a prior's scale, and this prior ({type(d).__name__}) has none: "
        "leave --temperature at 1, or use a Normal, Laplace, Student-t or mixture prior"
    )


@dataclass
class MixtureOptions(Options):
    """Options of the mixture priors (mog, vampprior)."""

    prior_components: int = option(
        10, "mixture components (mog) or pseudo-inputs (vampprior)", group="model"
    )

    def validate(self) -> None:
        at_least_one(self, "prior_components")


PRIORS: Registry = Registry("prior", group="pyro_vae.priors")
PRIORS.register("standard-normal", StandardNormal, "N(0, I) (default)")
PRIORS.register("normal", LearnedNormal, "N(m, diag s^2), m and s learned")
PRIORS.register(
    "mog",
    MixtureOfGaussians,
    "mixture of K learned Gaussians (K: prior_components)",
    options=MixtureOptions,
)
PRIORS.register(
    "vampprior",
    VampPrior,
    "the guide's posteriors at K learned pseudo-inputs",
    options=MixtureOptions,
)
PRIORS.register("laplace", Laplace, "Laplace, unit variance")
PRIORS.register("student-t", StudentT, "Student-t, 5 degrees of freedom")
PRIORS.register(
    "spherical", SphericalUniform, "uniform on the unit hypersphere (with --guide spherical)"
)
PRIORS.register("flat", Flat, "improper, log p(z) = 0 (with --guide delta: an autoencoder)")
