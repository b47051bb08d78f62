"""Typed configs. A checkpoint carries them, so a run can be rebuilt from the file alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from torch import nn

from .guides import DeltaGuide, FullCovGuide, IAFGuide, NormalGuide
from .likelihoods import LIKELIHOODS
from .models import VAEModel
from .priors import PRIORS, PriorArgs

GUIDES: dict[str, type[nn.Module]] = {
    "normal": NormalGuide,
    "fullcov": FullCovGuide,
    "iaf": IAFGuide,
    "delta": DeltaGuide,
}

T = TypeVar("T")


def choose(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]`` or a one-line error naming the valid choices."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)}") from None


@dataclass
class ModelConfig:
    """Constructor arguments of a model/guide pair, by name (see the factory tables)."""

    x_dim: int = 784
    z_dim: int = 50
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "elu"
    prior: str = "standard-normal"
    likelihood: str = "bernoulli"
    guide: str = "normal"
    prior_components: int = 10  # mixture components (mog) or pseudo-inputs (vampprior)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        choose(PRIORS, self.prior, "prior")
        choose(LIKELIHOODS, self.likelihood, "likelihood")
        choose(GUIDES, self.guide, "guide")

    def build(self) -> tuple[VAEModel, nn.Module]:
        """A fresh (model, guide) pair (the guide first: a VampPrior is built on it)."""
        guide = GUIDES[self.guide](self.x_dim, self.z_dim, self.hidden, self.activation)
        prior = PRIORS[self.prior](PriorArgs(self.z_dim, self.x_dim, self.prior_components, guide))
        model = VAEModel(
            self.x_dim,
            self.z_dim,
            self.hidden,
            prior=prior,
            likelihood=LIKELIHOODS[self.likelihood](),
            activation=self.activation,
        )
        return model, guide


@dataclass
class TrainConfig:
    """How a run trains and evaluates."""

    dataset: str = "mnist"
    data_dir: str | None = None
    binarize: str = "auto"  # auto: dynamic for 0/1 likelihoods, none for grey-level ones
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    elbo: str = "trace"
    num_particles: int = 1
    beta: float = 1.0  # weight of the KL term (β-VAE); 1 is the ELBO
    warmup_epochs: int = 0  # ramp the KL weight linearly from 0 to beta over these epochs
    seed: int = 0
    device: str = "auto"
    train_size: int | None = None  # first N training data only (quick runs)
    test_size: int | None = None
    ll_samples: int = 5000  # importance samples for the final test log p(x); 0 skips it


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """Rebuild a config, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in known})
