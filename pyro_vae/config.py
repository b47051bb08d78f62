"""Typed configs. A checkpoint carries them, so a run can be rebuilt from the file alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from torch import nn

from .guides import (
    ConditionalNormalGuide,
    DeltaGuide,
    FullCovGuide,
    IAFGuide,
    M2Guide,
    NormalGuide,
)
from .likelihoods import LIKELIHOODS
from .models import CVAEModel, M2Model, VAEModel
from .nets import ConvDecoder, ConvEncoder
from .priors import PRIORS, PriorArgs

NETS = ("mlp", "conv")

GUIDES: dict[str, type[nn.Module]] = {
    "normal": NormalGuide,
    "fullcov": FullCovGuide,
    "iaf": IAFGuide,
    "delta": DeltaGuide,
}

T = TypeVar("T")


def choose(table: Mapping[str, T] | Sequence[str], name: str, what: str) -> T:
    """``table[name]`` or a one-line error naming the valid choices."""
    if not isinstance(table, Mapping):
        if name not in table:
            raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)}")
        return name  # type: ignore[return-value]
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
    net: str = "mlp"  # or "conv": convolutional encoder and decoder for images
    image_shape: tuple[int, ...] | None = None  # set from the data; needed by "conv"
    model: str = "vae"  # or "cvae" (labels given) or "m2" (semi-supervised); see MODELS
    num_classes: int = 10  # labels of cvae / m2 (set from the data)
    aux_weight: float = 46.0  # m2: weight of the classifier's term on labelled data

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
        choose(NETS, self.net, "net")
        choose(PRIORS, self.prior, "prior")
        choose(LIKELIHOODS, self.likelihood, "likelihood")
        choose(GUIDES, self.guide, "guide")
        choose(MODELS, self.model, "model")

    def build(self) -> tuple[VAEModel, nn.Module]:
        """A fresh (model, guide) pair of the kind ``self.model`` names."""
        return MODELS[self.model](self)

    def build_vae(self) -> tuple[VAEModel, nn.Module]:
        """The VAE (the guide first: a VampPrior is built on it)."""
        likelihood = LIKELIHOODS[self.likelihood]()
        guide_cls = GUIDES[self.guide]
        encoder, decoder = (
            self._conv_nets(likelihood, guide_cls) if self.net == "conv" else (None, None)
        )
        guide = guide_cls(self.x_dim, self.z_dim, self.hidden, self.activation, encoder=encoder)
        prior = PRIORS[self.prior](PriorArgs(self.z_dim, self.x_dim, self.prior_components, guide))
        model = VAEModel(
            self.x_dim,
            self.z_dim,
            self.hidden,
            prior=prior,
            likelihood=likelihood,
            activation=self.activation,
            decoder=decoder,
        )
        return model, guide

    def _conv_nets(self, likelihood: nn.Module, guide_cls: type) -> tuple[nn.Module, nn.Module]:
        if self.image_shape is None:
            raise ValueError("--net conv needs the data's image_shape (set by the run)")
        width = self.hidden[0] if self.hidden else 256
        channels = getattr(likelihood, "params_per_pixel", 1)
        encoder = ConvEncoder(
            self.image_shape, guide_cls.encoder_width(self.z_dim), width, self.activation
        )
        decoder = ConvDecoder(self.z_dim, self.image_shape, channels, width, self.activation)
        return encoder, decoder

    def build_cvae(self) -> tuple[VAEModel, nn.Module]:
        """The conditional VAE: q(z | x, y), p(z) p(x | z, y)."""
        return self._labelled_pair(ConditionalNormalGuide, CVAEModel)

    def build_m2(self) -> tuple[VAEModel, nn.Module]:
        """The semi-supervised M2: q(y | x) q(z | x, y), p(y) p(z) p(x | z, y); the model scores
        the guide's classifier on labelled data (the auxiliary term)."""
        return self._labelled_pair(
            M2Guide,
            M2Model,
            lambda guide: {"classifier": guide.classifier, "aux_weight": self.aux_weight},
        )

    def _labelled_pair(
        self,
        guide_cls: type[nn.Module],
        model_cls: type[VAEModel],
        model_extras: Callable[[nn.Module], dict[str, Any]] = lambda guide: {},
    ) -> tuple[VAEModel, nn.Module]:
        self._labels_ok()
        guide = guide_cls(self.x_dim, self.z_dim, self.num_classes, self.hidden, self.activation)
        model = model_cls(
            self.x_dim,
            self.z_dim,
            self.num_classes,
            self.hidden,
            self._prior(guide),
            LIKELIHOODS[self.likelihood](),
            self.activation,
            **model_extras(guide),
        )
        return model, guide

    def _prior(self, guide: nn.Module) -> nn.Module:
        return PRIORS[self.prior](PriorArgs(self.z_dim, self.x_dim, self.prior_components, guide))

    def _labels_ok(self) -> None:
        """The label-aware models come with their own guide and an MLP; say so plainly."""
        if self.guide != "normal" or self.net != "mlp" or self.prior == "vampprior":
            raise ValueError(
                f"--model {self.model} has its own Normal guide and MLP networks and a prior "
                f"that does not read the guide: drop --guide {self.guide} / --net {self.net} / "
                f"--prior {self.prior} (use --guide normal --net mlp and a prior other than "
                "vampprior)"
            )


@dataclass
class TrainConfig:
    """How a run trains and evaluates."""

    dataset: str = "mnist"
    data_dir: str | None = None
    binarize: str = "auto"  # auto: dynamic for 0/1 likelihoods, none for grey-level ones
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam's moment decay rates (beta1, beta2)
    elbo: str = "trace"
    num_particles: int = 1
    beta: float = 1.0  # weight of the KL term (β-VAE); 1 is the ELBO
    warmup_epochs: int = 0  # ramp the KL weight linearly from 0 to beta over these epochs
    seed: int = 0
    device: str = "auto"
    train_size: int | None = None  # first N training data only (quick runs)
    test_size: int | None = None
    ll_samples: int = 5000  # importance samples for the final test log p(x); 0 skips it
    labels: int | None = None  # m2: labelled training data (balanced, chosen with seed)
    labelled_repeats: int = 1  # m2: passes over the labelled data per epoch

    def __post_init__(self) -> None:
        beta1, beta2 = (float(b) for b in self.adam_betas)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"adam_betas must lie in [0, 1); got {self.adam_betas}")
        self.adam_betas = (beta1, beta2)


# Model kinds by name: how ModelConfig.build makes the (model, guide) pair.
MODELS: dict[str, Callable[[ModelConfig], tuple[VAEModel, nn.Module]]] = {
    "vae": ModelConfig.build_vae,
    "cvae": ModelConfig.build_cvae,
    "m2": ModelConfig.build_m2,
}


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """Rebuild a config, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in known})
