"""``--model jointvae``: a continuous and a discrete latent (Dupont 2018), the discrete one
summed out exactly or relaxed.

JointVAE trains its categorical code with the Gumbel-softmax relaxation (Jang et al. 2017;
Maddison et al. 2017), as do pythae and PyTorch-VAE. In Pyro the sum over K categories is
exact: the guide marks ``c`` for parallel enumeration and ``--elbo enum`` (``TraceEnum_ELBO``)
adds the K terms, each weighted by q(c | x), with no sampling of c and no temperature. Both
are here on the same networks (``--discrete exact`` or ``relaxed``), and both are scored as the
discrete model a JointVAE is used as (log p(x) with c summed out exactly, samples with one-hot
c; :func:`summed_log_likelihood`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch import Tensor, nn
from torch.distributions import Distribution, relaxed_categorical

from .. import evaluate, plots
from ..evaluate import Data
from ..inputs import check_rows
from ..likelihoods import LikelihoodLike
from ..models import CVAEModel
from ..nets import MLP
from ..priors import PriorLike, temper
from ..registry import Options, Registry, at_least_one, option
from ..runtime import FastPyroModule
from .base import (
    ModelKind,
    RunView,
    _local,
    active_units,
    decode_chunks,
    draw,
    point_and_class,
    refuse_labels,
    register,
    site,
)

DISCRETE = ("exact", "relaxed")
MIN_SCALE = 1e-4


class ExpRelaxedCategorical(relaxed_categorical.ExpRelaxedCategorical, TorchDistributionMixin):
    """The Concrete distribution in log space (Maddison et al. 2017, appendix C): its draws are
    the logarithms of points on the simplex, so the log-densities of guide and prior stay finite
    at low temperatures where the simplex's corners underflow. The Jacobian of ``exp`` is the
    same in both and cancels in every ELBO."""


class JointVAEModel(CVAEModel):
    """Generative model of JointVAE, one datum at a time::

        c ~ p(c) = Categorical(1/K), one-hot     # the discrete code            site "c"
        z ~ p(z), e.g. N(0, I)                   # the continuous code          site "z"
        x ~ p(x | z, c) = L(f_theta(z, c))                                      site "x"

    inside ``pyro.plate("data")``. With ``temperature`` τ the discrete code is relaxed: c is
    Concrete(1/K, τ) on the simplex, held as its logarithm (:class:`ExpRelaxedCategorical`),
    and the decoder reads exp(c). ``f_theta`` is a ``ConditionalMLP`` on (z, c), so an
    enumerated c of shape (K, 1, K) decodes every category against the batch's z at once.

    Args:
        categories: K.
        temperature: τ of the relaxation; None for the discrete c.
        Others: as for :class:`~pyro_vae.models.VAEModel`.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        categories: int = 10,
        hidden: Sequence[int] = (500, 500),
        prior: PriorLike | None = None,
        likelihood: LikelihoodLike | None = None,
        activation: str = "elu",
        temperature: float | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, categories, hidden, prior, likelihood, activation)
        self.temperature = temperature
        self.register_buffer("category_probs", torch.full((categories,), 1.0 / categories))
        self.register_buffer("tau", torch.tensor(temperature or 1.0))

    def forward(  # type: ignore[override]
        self, x: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        n = self._num_data(x, batch_size)
        with pyro.plate("data", n):
            c = self.sample_c()
            z = self.sample_z()
            return self.sample_x(z, x, self.simplex(c))

    def sample_c(self) -> Tensor:
        """c ~ p(c): one-hot, or its relaxation (as a logarithm)."""
        if self.temperature is None:
            return pyro.sample("c", dist.OneHotCategorical(probs=self.category_probs))
        return pyro.sample("c", ExpRelaxedCategorical(self.tau, probs=self.category_probs))

    def simplex(self, c: Tensor) -> Tensor:
        """The decoder's reading of a value of site "c": a point of the simplex."""
        return c if self.temperature is None else c.exp()


class JointGuide(FastPyroModule):
    """The guide of JointVAE, mean-field over the two codes from one encoder::

        c ~ q(c | x) = Categorical(softmax(g_phi(x)))   (Concrete at τ when relaxed)  site "c"
        z ~ q(z | x) = N(mu_phi(x), diag(sigma_phi(x)^2))                            site "z"

    The discrete c is marked for parallel enumeration: under ``TraceEnum_ELBO`` its K values
    are summed, elsewhere it is sampled (a score-function gradient). The guide knows nothing of
    the priors.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        categories: int = 10,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim, self.categories = x_dim, z_dim, categories
        self.temperature = temperature
        self.encoder = MLP(x_dim, hidden, 2 * z_dim + categories, activation)
        self.register_buffer("tau", torch.tensor(temperature or 1.0))

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(c, z | x) encodes data: call guide(x) with x given")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            h = self.encoder(x)
            self.sample_c(h)
            return self.sample_z(h)

    def sample_c(self, h: Tensor) -> Tensor:
        """c ~ q(c | x), enumerated under TraceEnum_ELBO (or relaxed)."""
        logits = h[..., 2 * self.z_dim :]
        if self.temperature is None:
            fn = dist.OneHotCategorical(logits=logits)
            return pyro.sample("c", fn, infer={"enumerate": "parallel"})
        return pyro.sample("c", ExpRelaxedCategorical(self.tau, logits=logits))

    def sample_z(self, h: Tensor) -> Tensor:
        """z ~ q(z | x)."""
        return pyro.sample("z", self.z_posterior(h))

    def z_posterior(self, h: Tensor) -> Distribution:
        loc, raw_scale = h[..., : 2 * self.z_dim].chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)

    def posterior(self, x: Tensor) -> Distribution:
        """q(z | x)."""
        return self.z_posterior(self.encoder(x))

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """q(c | x) as probabilities, (batch, K)."""
        return self.encoder(x)[..., 2 * self.z_dim :].softmax(-1)

    @torch.no_grad()
    def point(self, x: Tensor) -> Tensor:
        """The mean of q(z | x)."""
        return self.posterior(x).mean


JOINT_GUIDES: Registry = Registry("guide of JointVAE")
JOINT_GUIDES.register("normal", JointGuide, "q(c | x) q(z | x), c enumerated or relaxed")


@dataclass
class JointOptions(Options):
    """Options of JointVAE."""

    categories: int = option(
        10, "jointvae: K, the categories of the discrete code c", group="model"
    )
    discrete: str = option(
        "exact",
        "jointvae: how c is trained: exact (summed out, with --elbo enum) or relaxed "
        "(Gumbel-softmax / Concrete at --gumbel-temperature)",
        group="model",
        choices=DISCRETE,
    )
    gumbel_temperature: float = option(
        0.67, "jointvae --discrete relaxed: τ of the Concrete relaxation", group="model"
    )

    def validate(self) -> None:
        at_least_one(self, "categories")
        if int(self.categories) < 2:
            raise ValueError(f"categories must be at least 2; got {self.categories}")
        if self.discrete not in DISCRETE:
            raise ValueError(
                f"discrete must be one of {', '.join(DISCRETE)}; got {self.discrete!r}"
            )
        if not (math.isfinite(self.gumbel_temperature) and self.gumbel_temperature > 0):
            raise ValueError(
                f"gumbel_temperature must be a finite number > 0 (e.g. 0.67); got "
                f"{self.gumbel_temperature}"
            )


@torch.no_grad()
def summed_log_likelihood(
    model: JointVAEModel, guide: JointGuide, x: Tensor, num_samples: int
) -> Tensor:
    """log p(x) per datum of the discrete model, c summed out exactly and z importance-sampled
    from q(z | x)::

        p(x) = sum_c p(c) E_{z ~ q(z|x)} [p(z) p(x | z, c) / q(z | x)]

    (``num_samples`` draws of z per datum, shared by the K categories; the decoder reads
    one-hot c whether it was trained on them or on their relaxation)."""
    k = model.num_classes
    eye = torch.eye(k, device=x.device)
    budget = evaluate.chunk_budget(model, x)
    sample_chunk = min(num_samples, budget)
    out = []
    with pyro.validation_enabled(False):
        for (xb,) in evaluate.chunks(x, max(1, budget // sample_chunk)):
            parts = []
            q = guide.posterior(xb)
            for start in range(0, num_samples, sample_chunk):
                z = q.sample((min(sample_chunk, num_samples - start),))  # (S, b, D)
                base = model.prior().log_prob(z) - q.log_prob(z)
                per_c = [base + model.decode(z, eye[j]).log_prob(xb) for j in range(k)]
                parts.append(torch.stack(per_c).logsumexp(0).logsumexp(0))
            lse = torch.stack(parts).logsumexp(0)
            out.append(lse - math.log(num_samples) - math.log(k))
    return torch.cat(out)


def cluster_accuracy(categories: Tensor, labels: Tensor) -> float:
    """Accuracy of the categories as classes, each category read as its most frequent label
    (the unsupervised accuracy of Dupont 2018 and of clustering papers)."""
    hits = 0
    for c in categories.unique():
        hits += int(torch.bincount(labels[categories == c]).max())
    return hits / len(labels)


@register
class JointVAE(ModelKind):
    """c ~ Cat(1/K), z ~ p(z), x ~ p(x | z, c); guide q(c | x) q(z | x); unlabelled data."""

    name = "jointvae"
    help = "JointVAE: a continuous z and a K-way c, c summed out exactly or relaxed"
    options = JointOptions
    guides = JOINT_GUIDES
    reconstruction_title = "test data (top) and E[x|z,c] at the mean of q(z|x), c its argmax"

    def check(self, config: Any) -> None:
        super().check(config)
        self.require_mlp(config)

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        tau = config.gumbel_temperature if config.discrete == "relaxed" else None
        guide = self.guides.choose(config.guide)(
            config.x_dim, config.z_dim, config.categories, config.hidden, config.activation, tau
        )
        model = JointVAEModel(
            config.x_dim,
            config.z_dim,
            config.categories,
            config.hidden,
            self.prior(config, config.z_dim, None),
            self.likelihood(config),
            config.activation,
            tau,
        )
        return model, guide

    def warnings(self, model_config: Any, train_config: Any) -> list[str]:
        if model_config.discrete != "exact" or train_config.elbo == "enum":
            return []
        return [
            f"warning: --model jointvae --discrete exact with --elbo {train_config.elbo} samples "
            "c (a high-variance score-function gradient); --elbo enum sums it out exactly"
        ]

    def results(self, run: RunView, test: Data) -> dict[str, Any]:
        """Active units of z, log p(x) with c summed out (as many decoder calls as the sampled
        estimate: k / K draws of z), and the categories' accuracy as classes where the data
        have labels."""
        x = evaluate.as_args(test)[0]
        codes = self.encode(run, test)
        out: dict[str, Any] = {"active_units": {"z": active_units(codes["z"])}}
        k = run.train_config.ll_samples
        if k and evaluate.normalised(run.model):
            samples = k
            with _local(run):
                ll = summed_log_likelihood(run.model, run.guide, x, samples)
            out["summed_log_likelihood"] = ll.mean().item()
            out["summed_log_likelihood_stderr"] = (ll.std() / math.sqrt(len(ll))).item()
            out["summed_samples"] = samples
        categories = codes["c_probs"].argmax(-1)
        out["categories_used"] = int(categories.unique().numel())
        labels = run.data.test_labels
        if labels is not None:
            out["cluster_accuracy"] = cluster_accuracy(categories.cpu(), labels[: len(x)].cpu())
        return out

    def summary(self, result: dict[str, Any]) -> str:
        line = super().summary(result)
        if "summed_log_likelihood" in result:
            line += f", log p(x) with c summed {result['summed_log_likelihood']:.2f}"
        if "cluster_accuracy" in result:
            line += f", cluster accuracy {result['cluster_accuracy']:.3f}"
        return line

    @torch.no_grad()
    def encode(self, run: RunView, test: Data) -> dict[str, Tensor]:
        """The mean of q(z | x) and q(c | x)'s probabilities."""
        return point_and_class(run, test, "c_probs")

    @torch.no_grad()
    def reconstruct(self, run: RunView, x: Tensor) -> Tensor:
        return self.decode(run, self.encode(run, x))

    @torch.no_grad()
    def decode(
        self, run: RunView, codes: dict[str, Tensor], labels: Tensor | None = None
    ) -> Tensor:
        """E[x | z, c] with c one-hot at the most probable category of ``c_probs`` (category 0
        where the codes hold z only)."""
        refuse_labels(self.name, labels)
        z = site(codes, "z")
        k = run.model_config.categories
        index = codes["c_probs"].argmax(-1) if "c_probs" in codes else torch.zeros_like(z[:, 0])
        return decode_chunks(run, z, F.one_hot(index.long(), k).to(z))

    @torch.no_grad()
    def sample(
        self, run: RunView, n: int, temperature: float = 1.0, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``n`` draws z ~ p(z) (scale times ``temperature``) and c ~ Cat(1/K), one-hot."""
        refuse_labels(self.name, labels)
        k = run.model_config.categories
        with _local(run):
            z = draw(temper(run.model.prior(), temperature), n)
            c = torch.randint(k, (n,), device=z.device)
            probs = F.one_hot(c, k).to(z)
            return {"z": z, "c_probs": probs, "mean": self.decode(run, {"z": z, "c_probs": probs})}

    def samples(self, run: RunView, path: Path, n: int = 100, seed: int = 0) -> list[Path]:
        """E[x | z, c] for ``n`` draws of :meth:`sample` as a grid."""
        torch.manual_seed(seed)
        mean = self.sample(run, n)["mean"]
        title = "E[x|z,c], z ~ p(z), c ~ Cat(1/K) one-hot"
        return [plots.save_grid(path, mean, run.data.image_shape, 10, title)]

    def figures(self, run: RunView, out: Path) -> list[Path]:
        """Reconstructions, prior samples, and ``categories.png``: ten draws of z (rows)
        decoded with each category (columns), what c has learned."""
        files = super().figures(run, out)
        k = run.model_config.categories
        torch.manual_seed(0)
        with _local(run):
            z = draw(run.model.prior(), 10).repeat_interleave(k, 0)
            c = torch.eye(k, device=z.device).repeat(10, 1)
            grid = run.model.decode(z, c).mean
        title = "E[x|z,c]: one z ~ p(z) per row, one category c per column"
        files.append(plots.save_grid(out / "categories.png", grid, run.data.image_shape, k, title))
        return files
