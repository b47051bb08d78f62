"""What a model kind declares, and the registry of kinds.

A kind (``--model vae``, ``cvae``, ``m2``, ``hvae``, or a user's class by import path) is one
module holding one :class:`ModelKind` subclass: how its model and guide are built from the
config, which view of the data it trains and is evaluated on, whether it needs labels, the
hooks and numbers it adds, its figures, its point summary (``pyro-vae encode``) and its
summary line. Nothing outside a kind branches on a kind's name.

Kinds take the run as a :class:`RunView` (``run.model``, ``run.guide``, ``run.data``,
``run.model_config``, ``run.train_config``, ``run.test_data``, ...): they sit among the pieces
and import no layer above.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from .. import data, evaluate, likelihoods, plots, predictive
from ..evaluate import Data
from ..guides import GUIDES
from ..nets import ACTIVATIONS, NETS, ConvDecoder, ConvEncoder
from ..priors import PRIORS, temper
from ..registry import Registry, construct, missing_arguments
from ..runtime import inference


class RunView(Protocol):
    """What a kind reads of a run (:class:`pyro_vae.run.Run` is one)."""

    model: nn.Module
    guide: nn.Module
    data: data.Dataset
    model_config: Any  # a ModelConfig (defined above the kinds)
    train_config: Any  # a TrainConfig
    test_data: Data | None
    trainer: Any  # the Trainer (defined above the kinds)
    binarize: str


# Model kinds by name; a kind registers itself with ``@register`` where it is defined.
KINDS: Registry = Registry("model kind", group="pyro_vae.kinds")

# posterior-mean variance above which a latent unit counts as active (Burda et al. 2015)
ACTIVE = 0.01


def register(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: add one instance of the kind to ``KINDS`` under ``cls.name``, with the
    options it declares (``cls.options``)."""
    KINDS.register(cls.name, cls(), help=cls.help, options=cls.options)
    return cls


def kind_of(name: str) -> ModelKind:
    """The kind named ``name`` (an instance; a class named by import path is instantiated)."""
    found = KINDS.choose(name)
    return found() if isinstance(found, type) else found


def build(config: Any) -> tuple[nn.Module, nn.Module]:
    """A fresh (model, guide) pair of the kind ``config.model`` names, from a
    :class:`~pyro_vae.config.ModelConfig`."""
    return kind_of(config.model).build(config)


class ModelKind:
    """The default kind is the one-latent VAE on unlabelled data; subclasses override what
    differs. ``config`` is a :class:`~pyro_vae.config.ModelConfig`."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    guides: ClassVar[Registry] = GUIDES  # the guide names this kind accepts
    default_guide: ClassVar[str] = "normal"
    conditioned_on: ClassVar[str] = ""  # e.g. " | y": what the log-likelihood is conditional on
    code_site: ClassVar[str] = "z"  # the latent site a plain array of codes is decoded as
    options: ClassVar[type | None] = None  # the dataclass of the options the kind brings
    centres_inputs: ClassVar[bool] = False  # whether its networks take --centred
    # the column of the epoch's row --keep-best and --early-stop follow, and whether higher
    # ("max") or lower ("min") is better
    best_metric: ClassVar[tuple[str, str]] = ("val_elbo", "max")

    # -- configuration --------------------------------------------------------------------
    def check(self, config: Any) -> None:
        """Refuse settings this kind cannot build, with the fix (called by ModelConfig)."""
        self.guides.check(config.guide)
        PRIORS.check(config.prior)
        likelihoods.LIKELIHOODS.check(config.likelihood)
        ACTIVATIONS.check(config.activation)
        NETS.check(config.net)

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def likelihood(self, config: Any) -> nn.Module:
        factory = likelihoods.LIKELIHOODS.choose(config.likelihood)
        available = {
            "x_dim": config.x_dim,
            "image_shape": config.image_shape,
            "centred": config.centred,
        }
        # the options the likelihoods declare, for those whose constructor names them
        for options in likelihoods.LIKELIHOODS.options():
            available |= {f.name: getattr(config, f.name) for f in fields(options)}
        missing = missing_arguments(factory, available) if inspect.isfunction(factory) else []
        if len(missing) == 1:
            # a user's function from the decoder's output to a distribution (the README's
            # ``laplace(out)``) is the likelihood itself, not a factory of one
            return factory  # type: ignore[return-value]
        if missing:
            raise ValueError(
                f"likelihood {config.likelihood!r} is neither a likelihood (a function of one "
                "argument, the decoder's output) nor a factory of one (taking some of x_dim, "
                f"image_shape): it needs {', '.join(missing)}"
            )
        return construct(factory, **available)

    def guide_options(self, config: Any) -> dict[str, Any]:
        """The options the kind's guides declare (``flow``, ...), for the guide's constructor
        and its ``encoder_width`` to take those they name."""
        return {
            f.name: getattr(config, f.name) for cls in self.guides.options() for f in fields(cls)
        }

    def prior(self, config: Any, z_dim: int, guide: nn.Module | None) -> nn.Module:
        return construct(
            PRIORS.choose(config.prior),
            z_dim=z_dim,
            x_dim=config.x_dim,
            components=config.prior_components,
            guide=guide,
        )

    def conv_nets(
        self, config: Any, encoder_width: int, params_per_pixel: int
    ) -> tuple[nn.Module | None, nn.Module | None]:
        """(encoder, decoder) for ``net="conv"``; (None, None) for the MLP."""
        if config.net != "conv":
            return None, None
        if config.image_shape is None:
            raise ValueError("--net conv needs the data's image_shape (set by the run)")
        width = config.hidden[0] if config.hidden else 256
        shape, act, res = config.image_shape, config.activation, config.residual
        encoder = ConvEncoder(shape, encoder_width, width, act, res, config.centred)
        decoder = ConvDecoder(config.z_dim, shape, params_per_pixel, width, act, res)
        return encoder, decoder

    def require_mlp(self, config: Any) -> None:
        """For kinds with their own MLP networks and a prior that cannot read their guide."""
        if config.net != "mlp" or config.prior == "vampprior":
            raise ValueError(
                f"--model {self.name} has its own MLP networks and a prior that does not read "
                f"the guide: drop --net {config.net} / --prior {config.prior} (use --net mlp "
                "and a prior other than vampprior)"
            )

    def warnings(self, model_config: Any, train_config: Any) -> list[str]:
        """Lines to print before training (settings that work but are probably not meant)."""
        return []

    # -- data -----------------------------------------------------------------------------
    def num_classes(self, config: Any, dataset: data.Dataset) -> int:
        if not self.needs_labels:
            return config.num_classes
        if dataset.train_labels is None or dataset.test_labels is None:
            raise ValueError(
                f"--model {self.name} needs labelled data and {dataset.name} has no labels: "
                "use --dataset mnist or fashion-mnist"
            )
        train, test = dataset.train_labels, dataset.test_labels
        k = int(train.max()) + 1
        low = int(min(train.min(), test.min()))
        if low < 0:
            raise ValueError(f"the labels of {dataset.name} must be 0..K-1; found {low}")
        if int(test.max()) >= k:
            raise ValueError(
                f"a test label of {dataset.name} ({int(test.max())}) is no training class "
                f"(0..{k - 1}): fix the labels"
            )
        unused = k - len(torch.unique(train))
        if unused:
            raise ValueError(
                f"the training labels of {dataset.name} run up to {k - 1}, but {unused} of the "
                f"classes 0..{k - 1} have no data: labels must be 0..K-1 with every class used"
            )
        return k

    def views(
        self, dataset: data.Dataset, train_config: Any, num_classes: int
    ) -> tuple[data.TrainingData, Data]:
        """(what the trainer iterates over, what model and guide are scored on)."""
        return dataset.train, dataset.test

    # -- training and results -------------------------------------------------------------
    def hooks(self, run: RunView) -> list[Any]:
        """Training hooks the kind adds (run before the run folder writes each epoch's row)."""
        return []

    def results(self, run: RunView, test: Data) -> dict[str, Any]:
        """Numbers the kind adds to evaluation.json (``test``: the scored data)."""
        codes = self.encode(run, test)
        return {"active_units": {site: active_units(z) for site, z in codes.items()}}

    def summary(self, result: dict[str, Any]) -> str:
        """Text the kind appends to the one-line summary."""
        units = result.get("active_units")
        if not units:
            return ""
        return ", active units " + ", ".join(f"{site} {n}" for site, n in units.items())

    # -- what a trained run shows ---------------------------------------------------------
    @torch.no_grad()
    def encode(self, run: RunView, test: Data) -> dict[str, Tensor]:
        """The guide's point summary of every latent site, per datum (``pyro-vae encode``)."""
        with _local(run):
            return {"z": torch.cat([run.guide.point(xb) for xb, *_ in evaluate.chunks(test, 1000)])}

    reconstruction_title: ClassVar[str] = (
        "test data (top) and reconstructions E[x|z], z = mean of q(z|x) (bottom)"
    )

    @torch.no_grad()
    def reconstruct(self, run: RunView, x: Tensor) -> Tensor:
        """E[x | z] at the guide's point summary of z."""
        return predictive.reconstruct(run.model, run.guide, x)

    def figures(self, run: RunView, out: Path) -> list[Path]:
        """The kind's figures in the run folder: reconstructions and prior samples."""
        x = test_examples(run)
        with _local(run):
            recon = self.reconstruct(run, x)
        grid = torch.cat([x, recon])
        title = self.reconstruction_title
        return [
            plots.save_grid(out / "reconstructions.png", grid, run.data.image_shape, len(x), title),
            *self.samples(run, out / "prior_samples.png"),
        ]

    def samples(self, run: RunView, path: Path, n: int = 100, seed: int = 0) -> list[Path]:
        """E[x | z] for ``n`` prior draws z ~ p(z) as a grid (``pyro-vae sample``)."""
        torch.manual_seed(seed)
        try:
            draws = predictive.prior_predictive(run.model, n)
        except NotImplementedError:  # an improper prior (priors.Flat) cannot be sampled
            print(f"no {path.name}: the prior cannot be sampled", file=sys.stderr)
            return []
        ncol = _columns(n)
        return [
            plots.save_grid(path, draws["mean"], run.data.image_shape, ncol, "E[x|z], z ~ p(z)")
        ]

    # -- a trained model applied to given data (pyro-vae encode/decode/sample, Run) ----------
    def data_view(self, run: RunView, x: Tensor, labels: Tensor | None = None) -> Data:
        """What model and guide are called with for images ``x`` (as stored) and their class
        indices ``labels`` (where the kind reads labels)."""
        return x

    @torch.no_grad()
    def decode(
        self, run: RunView, codes: dict[str, Tensor], labels: Tensor | None = None
    ) -> Tensor:
        """E[x | z] for codes as :meth:`encode` gives them (``labels``: class indices, for the
        label-aware kinds)."""
        refuse_labels(self.name, labels)
        return decode_chunks(run, site(codes, "z"))

    @torch.no_grad()
    def sample(
        self, run: RunView, n: int, temperature: float = 1.0, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``n`` draws z ~ p(z) (the prior's scale times ``temperature``) and their E[x | z]:
        ``{"z", "mean"}``."""
        refuse_labels(self.name, labels)
        with _local(run):
            z = draw(temper(run.model.prior(), temperature), n)
            return {"z": z, "mean": self.decode(run, {"z": z})}


def refuse_labels(kind: str, labels: Tensor | None) -> None:
    if labels is not None:
        raise ValueError(
            f"--model {kind} does not read labels: leave out --label (label-aware kinds: cvae, m2)"
        )


def site(codes: dict[str, Tensor], name: str) -> Tensor:
    """The codes of one latent site, or one line naming the sites that were given."""
    if name not in codes:
        raise ValueError(
            f"the codes hold {sorted(codes)}, and this model decodes {name!r}: give the .npz "
            f"that pyro-vae encode wrote for this run (or a .npy of {name})"
        )
    return codes[name]


def decode_chunks(run: RunView, *codes: Tensor, size: int = 1000) -> Tensor:
    """E[x | codes...] (the model's ``decode(...).mean``), the codes (a latent and, for the
    label-aware kinds, a one-hot class) split alike into chunks of ``size`` data."""
    with _local(run):
        chunks = zip(*(c.split(size) for c in codes), strict=True)
        return torch.cat([run.model.decode(*parts).mean for parts in chunks])


@torch.no_grad()
def point_and_class(run: RunView, test: Data, name: str) -> dict[str, Tensor]:
    """The guide's point summary of z and its class probabilities (``guide.classify``) for
    each datum of ``test``: ``{"z", name}`` (M2's q(y | x), JointVAE's q(c | x))."""
    with _local(run):
        parts = evaluate.chunks(evaluate.as_args(test)[0], 1000)
        z = torch.cat([run.guide.point(xb) for (xb,) in parts])
        probs = torch.cat([run.guide.classify(xb) for (xb,) in parts])
    return {"z": z, name: probs}


def draw(prior: Any, n: int) -> Tensor:
    """``n`` draws from a prior; an improper one is refused in one line."""
    try:
        return prior.sample((n,))
    except NotImplementedError:
        raise ValueError(
            "the prior cannot be sampled (an improper flat prior): this run encodes, decodes, "
            "reconstructs and interpolates, but draws no samples"
        ) from None


def active_units(codes: Tensor, threshold: float = ACTIVE) -> int:
    """Units whose posterior mean varies over the data, Cov_x(E_q[z_i | x]) > threshold
    (Burda et al. 2015)."""
    if codes.shape[0] < 2:
        return 0
    return int((codes.float().var(0) > threshold).sum())


def test_examples(run: RunView, n: int = 10) -> Tensor:
    """``n`` test data chosen with a fixed seed (the same in every figure of a run)."""
    return data.as_input(run.data.test[test_indices(run, n)])


def test_indices(run: RunView, n: int = 10) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(run.data.test.shape[0], generator=gen)[:n]
    return idx.to(run.data.test.device)


def _columns(n: int) -> int:
    return max(1, min(10, round(n**0.5))) if n < 100 else 10


def _local(run: RunView) -> Any:
    return inference(run.model, run.guide)


__all__ = ["KINDS", "ModelKind", "RunView", "active_units", "build", "kind_of", "register"]


def build_in_memory(kind: ModelKind, model_config: Any) -> tuple[Any, Any]:
    """The kind's model and guide, or one line where their weights do not fit in memory (an
    MLP on large images: its first layer has C*H*W times --hidden[0] weights, checked by
    :func:`pyro_vae.nets.linear` before it is allocated; this catches the rest)."""
    fix = "use a smaller --image-size, narrower --hidden layers, or --net conv"
    try:
        return kind.build(model_config)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        shape = " x ".join(map(str, model_config.image_shape))
        asked = re.search(r"allocate (\d+) bytes", str(e))
        size = f" (one of its layers needs {int(asked[1]) / 2**30:,.1f} GiB)" if asked else ""
        raise ValueError(
            f"the model for {shape} images does not fit in memory{size}: {fix}"
        ) from None
