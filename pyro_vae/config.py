"""Typed configs. A checkpoint carries them, so a run can be rebuilt from the file alone.

Options are validated here, where they are defined, so the Python API and the command line
(whose options are derived from these fields, see :mod:`pyro_vae.options`) refuse the same
values with the same message. A field's metadata holds its help text, its command-line flag
when that differs from ``--field-name``, and ``cli=False`` for values set from the data.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import data
from .guides import GUIDES
from .kinds import KINDS, kind_of
from .likelihoods import LIKELIHOODS
from .nets import ACTIVATIONS, NETS
from .objectives import ELBOS
from .priors import PRIORS
from .registry import Options, Registry, at_least_one, non_negative, one_of, option
from .traced import STEPS

T = TypeVar("T")

# --lr-schedule: torch.optim.lr_scheduler on the trainer's Adam, stepped after each epoch
LR_SCHEDULES = ("none", "cosine", "step", "plateau")


def piece_options(*registries: Registry) -> tuple[type, ...]:
    """The option dataclasses the registered pieces declare (each once, in registration
    order): the bases of the configs, so that a piece's options become config fields, flags and
    config-file keys without this module naming them."""
    found: dict[type, None] = {}
    for registry in registries:
        found |= dict.fromkeys(registry.options())
    return tuple(found)


def config_fields(cls: type) -> list[Field]:
    """A config's fields in the order users read them: its own, then those its pieces
    declare (piece by piece)."""
    own = vars(cls).get("__annotations__", {})
    every = fields(cls)  # type: ignore[arg-type]
    return [f for f in every if f.name in own] + [f for f in every if f.name not in own]


def validate_pieces(config: Any) -> None:
    """Each declaring piece's own checks of its options (:meth:`Options.validate`)."""
    for cls in type(config).__mro__:
        if cls is not Options and issubclass(cls, Options) and "validate" in vars(cls):
            cls.validate(config)


def _names(registry: Any) -> str:
    return ", ".join(registry.names())


@dataclass
class ModelConfig(*piece_options(KINDS, PRIORS, LIKELIHOODS, GUIDES, NETS)):  # type: ignore[misc]
    """What model/guide pair to build, by name (see :mod:`pyro_vae.kinds`); the options the
    chosen pieces declare (``prior_components``, ``z1_dim``, ...) come from their bases."""

    # the field that chooses each kind of piece, from its registry (see unused_options)
    chosen_by: ClassVar[dict[str, Registry]] = {
        "model": KINDS,
        "prior": PRIORS,
        "likelihood": LIKELIHOODS,
        "guide": GUIDES,
        "net": NETS,
    }

    model: str = option(
        "vae", f"model kind: {_names(KINDS)} (or package.module:Kind)", group="model"
    )
    z_dim: int = option(50, "latent size (hvae: the top layer z2)", group="model")
    hidden: tuple[int, ...] = option(
        (500, 500), "MLP widths (hvae: the x <-> z1 networks)", group="model"
    )
    activation: str = option("elu", f"hidden activation: {', '.join(ACTIVATIONS)}", group="model")
    prior: str = option(
        "standard-normal", f"prior p(z): {_names(PRIORS)} (or package.module:Class)", group="model"
    )
    likelihood: str = option(
        "bernoulli", f"p(x|z): {_names(LIKELIHOODS)} (or package.module:Class)", group="model"
    )
    guide: str | None = option(
        None,
        f"guide (default: the kind's): vae: {_names(GUIDES)}; hvae: bottom-up, ladder "
        "(or package.module:Class)",
        group="model",
    )
    net: str = option(
        "mlp",
        "mlp, or conv (convolutional, for (C, H, W) images: one stride-2 level per halving "
        "down to 4-7 pixels; --hidden's first width sizes its dense layer)",
        group="model",
    )
    centred: bool | None = option(
        None,
        "data in [-1, 1] on both sides: the encoder reads 2x - 1 and the 256-level likelihoods "
        "place their logistics in [-1, 1] (the same masses of the 256 levels; trains faster). "
        "Default: on for logistic256 / logistic-mixture with --model vae",
        group="model",
        saved_before=False,  # runs saved before the option existed read [0, 1]
    )
    x_dim: int = option(784, "size of one flattened datum (set from the data)", cli=False)
    image_shape: tuple[int, ...] | None = option(None, "set from the data", cli=False)
    num_classes: int = option(10, "labels of cvae / m2 (set from the data)", cli=False)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
        at_least_one(self, "z_dim", "x_dim", "num_classes")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be at least 1; got {self.hidden}")
        validate_pieces(self)
        kind = kind_of(self.model)
        if self.guide is None:
            self.guide = kind.default_guide
        kind.check(self)
        if self.centred is None:
            levels = getattr(LIKELIHOODS.choose(self.likelihood), "levels", None)
            self.centred = kind.centres_inputs and levels == 256
        elif self.centred and not kind.centres_inputs:
            raise ValueError(
                f"--centred: --model {self.model} builds its own networks, which read data in "
                "[0, 1]: leave out --centred (it is for --model vae)"
            )


@dataclass
class TrainConfig(*piece_options(ELBOS)):  # type: ignore[misc]
    """How a run trains and evaluates; the options the objectives declare (``tc_weight``,
    ``capacity``, ...) come from their bases."""

    chosen_by: ClassVar[dict[str, Registry]] = {"elbo": ELBOS}

    dataset: str = option(
        "mnist",
        f"data set: {', '.join(data.DATASETS)}; or your own images: "
        f"{', '.join(f'{s}:PATH' for s in data.SOURCES)} (or package.module:load)",
        group="data",
    )
    data_dir: str | None = option(
        None, f"folder with the data files (else ${data.ENV_VAR})", group="data"
    )
    binarize: str = option(
        "auto",
        "auto (dynamic for 0/1 likelihoods, none for grey-level ones), dynamic, fixed, none",
        group="data",
    )
    image_size: int | None = option(
        None,
        "image folders and CelebA: centre-crop to a square and resize to S x S (others: resize)",
        group="data",
        metavar="S",
    )
    train_size: int | None = option(
        None, "use N training data (class-balanced where labelled, else at random)", group="data"
    )
    test_size: int | None = option(None, "use N test data (chosen as --train-size)", group="data")
    labels: int | None = option(
        None, "m2: labelled training data, balanced over classes, chosen with --seed", group="data"
    )
    labelled_repeats: int = option(
        1, "m2: passes over the labelled data per epoch (1: Pyro's schedule)", group="data"
    )
    epochs: int = option(10, "epochs (passes over the training data)")
    batch_size: int = option(128, "data per step")
    lr: float = option(1e-3, "Adam learning rate")
    adam_betas: tuple[float, float] = option(
        (0.9, 0.999), "Adam's decay rates of the gradient's moments", metavar=("BETA1", "BETA2")
    )
    weight_decay: float = option(
        0.0,
        "L2 weight decay of the model's parameters (the decoder's; the guide's are not "
        "decayed): with --guide delta, the regularised autoencoder RAE-L2",
    )
    elbo: str = option("trace", f"objective: {_names(ELBOS)}")
    num_particles: int = option(
        1, "particles k per datum (iwae: the bound's k)", flag="--particles"
    )
    step: str = option(
        "traced",
        "traced (the ELBO's tensor operations recorded once per batch shape and replayed; "
        "falls back to eager, with a note, where a model cannot be traced) or eager (Pyro runs "
        "model and guide every step)",
    )
    beta: float = option(1.0, "weight of the KL term (β-VAE); 1 is the ELBO")
    warmup_epochs: int = option(0, "ramp the KL weight linearly from 0 to beta over these epochs")
    seed: int = option(0, "random seed")
    device: str = option("auto", "auto (CUDA if present), cpu, cuda[:N]")
    data_memory: float | None = option(
        None,
        "GiB the training images may take on the device; above it they stream from a "
        "memory-mapped file, one batch at a time (default: half the free GPU memory on CUDA, "
        "no limit on the CPU)",
        group="data",
        metavar="GIB",
    )
    ll_samples: int = option(5000, "importance samples for the final test log p(x); 0 skips it")
    dist_timeout: float = option(
        600.0,
        "torchrun runs: seconds a process waits for the others (a collective, rank 0 writing "
        "an epoch) before the run stops with an error; must exceed rank 0's longest write",
        metavar="S",
    )
    tensorboard: bool = option(
        False,
        "also write TensorBoard event files into the run folder (per-epoch numbers, the "
        "figures): pip install tensorboard",
    )
    mlflow: bool = option(
        False,
        "log params, per-epoch metrics and figures to MLflow (a local file store mlruns beside "
        "the run folder, e.g. runs/mlruns, unless MLFLOW_TRACKING_URI is set): pip install "
        "mlflow-skinny",
    )
    val_size: float | None = option(
        None,
        "hold out N of the training data (after --train-size), or a FRACTION in (0, 1) of "
        "them, as a validation set chosen with --seed, balanced over the classes where "
        "labelled: scored each epoch "
        "(the val_* columns) in place of the test set, which is scored at the end only",
        group="data",
        metavar="N",
    )
    keep_best: bool = option(
        False,
        "also write best.pt, the checkpoint of the epoch with the best validation score (the "
        "ELBO; m2: the accuracy of q(y|x)); needs --val-size",
    )
    early_stop: int | None = option(
        None,
        "stop after PATIENCE epochs without a better validation score (the run is still "
        "evaluated); needs --val-size",
        metavar="PATIENCE",
    )
    lr_schedule: str = option(
        "none",
        f"learning-rate schedule, stepped after each epoch ({', '.join(LR_SCHEDULES)}): "
        "cosine falls to 0 over --lr-cosine-epochs, step multiplies by --lr-gamma every "
        "--lr-step-epochs, plateau multiplies by --lr-gamma after --lr-patience epochs without "
        "a better validation score (training ELBO without --val-size)",
        metavar="NAME",
    )
    lr_cosine_epochs: int | None = option(
        None,
        "--lr-schedule cosine: epochs over which the rate falls from --lr to 0 (default: "
        "--epochs when the run starts; kept on --resume; past them it rises again)",
        metavar="EPOCHS",
    )
    lr_step_epochs: int = option(
        10, "--lr-schedule step: epochs between two steps", metavar="EPOCHS"
    )
    lr_gamma: float = option(
        0.1,
        "--lr-schedule step and plateau: factor in (0, 1) applied to the rate at a step",
        metavar="GAMMA",
    )
    lr_patience: int = option(
        10,
        "--lr-schedule plateau: epochs without improvement before the rate is cut",
        metavar="EPOCHS",
    )
    clip_norm: float | None = option(
        None,
        "clip the gradient's L2 norm over all parameters to this before each step "
        "(torch.nn.utils.clip_grad_norm_)",
        metavar="NORM",
    )

    def __post_init__(self) -> None:
        # recorded resolved: a relative folder means nothing elsewhere
        self.dataset = data.resolve_spec(self.dataset)
        if self.data_dir:
            self.data_dir = str(Path(self.data_dir).expanduser().resolve())
        beta1, beta2 = (float(b) for b in self.adam_betas)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"adam_betas must lie in [0, 1); got {self.adam_betas}")
        self.adam_betas = (beta1, beta2)
        non_negative(self, "weight_decay")
        ELBOS.check(self.elbo)
        if self.step not in STEPS:
            one_of(self.step, STEPS, "training step")
        if self.binarize not in ("auto", *data.BINARIZATIONS):
            one_of(self.binarize, ("auto", *data.BINARIZATIONS), "binarization")
        for name in ("ll_samples", "warmup_epochs", "labelled_repeats", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "num_particles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 2:
            raise ValueError(f"image_size must be at least 2 pixels; got {self.image_size}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.labels is not None and self.labels < 0:
            raise ValueError(f"labels must be >= 0; got {self.labels}")
        if self.data_memory is not None and not (
            math.isfinite(self.data_memory) and self.data_memory >= 0
        ):
            raise ValueError(
                f"data_memory must be a finite number of GiB >= 0; got {self.data_memory}"
            )
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(
                f"lr must lie in (0, 1] (Adam diverges above; 1e-4 to 1e-2 is usual); got {self.lr}"
            )
        if not (math.isfinite(self.dist_timeout) and self.dist_timeout > 0):
            raise ValueError(
                f"dist_timeout must be a finite number of seconds > 0; got {self.dist_timeout}"
            )
        validate_pieces(self)
        if self.elbo in ("tcvae", "capacity") and (self.beta != 1 or self.warmup_epochs):
            raise ValueError(
                f"--elbo {self.elbo} weighs its own KL terms (--tc-weight, --capacity-gamma): "
                "leave --beta at 1 and --warmup-epochs at 0"
            )
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0; got {self.beta}")
        if self.val_size is not None and not (
            math.isfinite(self.val_size)
            and (
                0 < self.val_size < 1
                or (self.val_size >= 1 and self.val_size == int(self.val_size))
            )
        ):
            raise ValueError(
                f"val_size must be a count >= 1 or a fraction in (0, 1); got {self.val_size}"
            )
        if self.early_stop is not None and self.early_stop < 1:
            raise ValueError(f"early_stop must be at least 1 epoch; got {self.early_stop}")
        for flag, used in (("--keep-best", self.keep_best), ("--early-stop", self.early_stop)):
            if used and self.val_size is None:
                raise ValueError(
                    f"{flag} needs --val-size: choosing epochs by the test set would overfit "
                    "it; hold out validation data with --val-size N (or a fraction)"
                )
        if self.lr_schedule not in LR_SCHEDULES:
            one_of(self.lr_schedule, LR_SCHEDULES, "learning-rate schedule")
        for name in ("lr_step_epochs", "lr_cosine_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.lr_patience < 0:
            raise ValueError(f"lr_patience must be >= 0; got {self.lr_patience}")
        if not (math.isfinite(self.lr_gamma) and 0 < self.lr_gamma < 1):
            raise ValueError(f"lr_gamma must lie in (0, 1); got {self.lr_gamma}")
        if self.clip_norm is not None and not (
            math.isfinite(self.clip_norm) and self.clip_norm > 0
        ):
            raise ValueError(f"clip_norm must be a finite number > 0; got {self.clip_norm}")

    def check_packages(self) -> None:
        """Refuse, in one line, options whose package is not installed here. Called when a
        run starts (before its data load), not when a config is read: a run logged with
        TensorBoard must still load and resume where tensorboard is missing."""
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "--tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install -e '.[tensorboard]'), or leave out --tensorboard"
            )
        if self.mlflow and importlib.util.find_spec("mlflow") is None:
            raise ValueError(
                "--mlflow needs the mlflow package: pip install mlflow-skinny "
                "(or pip install -e '.[mlflow]'), or leave out --mlflow"
            )


# what may change when a run is resumed (each change is logged in the run folder); any other
# difference from the saved options is refused
RESUMABLE = (
    "epochs",
    "lr",
    "device",
    "data_dir",
    "data_memory",
    "ll_samples",
    "tensorboard",
    "mlflow",
    "step",
    "dist_timeout",
    "keep_best",
    "early_stop",
)


def differences(saved: Any, given: Any) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved value, given value)}`` for the options in which two configs of one
    class differ: not the values set from the data, nor the options of pieces ``saved`` does
    not use (a run of ``--likelihood logistic256`` that recorded an older default of
    ``vaegan_gamma`` is the same run)."""
    unused = unused_options(saved)
    return {
        f.name: (getattr(saved, f.name), getattr(given, f.name))
        for f in fields(saved)
        if f.metadata.get("cli", True)
        and f.name not in unused
        and getattr(saved, f.name) != getattr(given, f.name)
    }


def unused_options(config: Any) -> set[str]:
    """The options declared by registered pieces that ``config`` does not choose: the fields
    of an option dataclass none of whose readers is the config's choice of that kind of piece
    (``config.chosen_by``). A piece given by import path declares none."""
    used: set[str] = set()
    declared: set[str] = set()
    for chooser, registry in getattr(config, "chosen_by", {}).items():
        chosen = getattr(config, chooser)
        for cls, names in registry.options().items():
            names_of = {f.name for f in fields(cls)}
            declared |= names_of
            if chosen in names:
                used |= names_of
    return declared - used


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """Rebuild a saved config, ignoring keys this version does not know; an option added
    since takes its ``saved_before`` value (what runs saved before it did), else its default."""
    every = fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in every}
    before = {f.name: f.metadata["saved_before"] for f in every if "saved_before" in f.metadata}
    return cls(**(before | {k: v for k, v in values.items() if k in known}))
