"""Composing a run: data + model/guide + Trainer, trained into one output folder.

The CLI's ``train`` and every experiment script compose these functions; none has its own loop.
What the folder holds is written by :mod:`pyro_vae.runfolder` (checkpoint, metrics.csv,
evaluation.json) and :mod:`pyro_vae.figures` (the figures the model kind chooses).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from . import data, distributed, evaluate
from .applied import Applied
from .config import ModelConfig, TrainConfig, from_dict
from .configfile import write_run_config
from .data import TrainingData
from .data.dataset import validation_split
from .evaluate import Data
from .figures import write_figures
from .kinds import ModelKind, build_in_memory, kind_of
from .likelihoods import accepts_grey_levels
from .loggers import MLflow, TensorBoard
from .resume import check_same_data, log_changes, resumed_configs
from .runfolder import (
    LOCK,
    BitsPerDim,
    FolderLock,
    KeepBest,
    RunFolder,
    describe,
    format_summary,
    load_checkpoint,
    save_checkpoint,
    write_json,
    write_metrics,
    writes_files,
)
from .runtime import resolve_device, set_seed
from .train import Hook, Trainer, Watch


@runtime_checkable
class RunStartHook(Protocol):
    """A hook called with the built run (data included) before training."""

    def on_run_start(self, run: Run) -> None: ...


@dataclass
class Run(Applied):
    """Everything a finished or restored run holds; applied to given data with the methods
    of :class:`~pyro_vae.applied.Applied` (``encode``, ``decode``, ``reconstruct``,
    ``sample``, ``elbo``, ``log_likelihood``), written as a run folder with :meth:`save`."""

    model_config: ModelConfig
    train_config: TrainConfig
    model: nn.Module
    guide: nn.Module
    trainer: Trainer
    data: data.Dataset
    binarize: str
    out: Path | None = None
    train_data: TrainingData | None = None  # what the trainer iterates over (the kind's view)
    test_data: Data | None = None  # what the model and guide are scored on
    data_fingerprint: str | None = None  # of the data as loaded (Dataset.fingerprint)
    other_data: bool = False  # scored on other data than it was trained on, on purpose
    # --val-size: the validation data as a data set whose test split they are (its train
    # split is the run's), and the kind's view of them, which the trainer scores each epoch
    validation: data.Dataset | None = None
    val_data: Data | None = None

    @property
    def kind(self) -> ModelKind:
        return kind_of(self.model_config.model)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write this run as a run folder (``checkpoint.pt``, ``metrics.csv``, ``config.toml``,
        ``evaluation.json`` where it was evaluated, the figures where its test data are at
        hand) that ``pyro-vae evaluate`` and :func:`load` read. A folder holding another
        run's checkpoint is refused."""
        folder = Path(folder)
        ckpt = folder / "checkpoint.pt"
        same = self.out is not None and folder.resolve() == Path(self.out).resolve()
        if ckpt.exists() and not same:
            raise FileExistsError(f"{ckpt} exists: save the run into a new or empty folder")
        check_writable(folder)
        with FolderLock(folder):  # refused while another process trains into it
            save_checkpoint(self, ckpt)
            if self.trainer.history:
                write_metrics(folder / "metrics.csv", self.trainer.history)
            write_run_config(folder, self.model_config, self.train_config)
            evaluation = Path(self.out) / "evaluation.json" if self.out is not None else None
            if evaluation is not None and not same and evaluation.is_file():
                shutil.copyfile(evaluation, folder / "evaluation.json")
            if self.test_data is not None:
                write_figures(self, folder)
        return folder


def resolve_binarize(binarize: str, model: nn.Module, dataset: data.Dataset) -> str:
    """``auto`` -> ``dynamic`` for 0/1 likelihoods, ``none`` for grey-level ones; refuse grey
    levels for a 0/1 likelihood."""
    grey_ok = accepts_grey_levels(model.likelihood, dataset.x_dim)
    x = dataset.train
    if x.is_floating_point() and len(x) and not bool(((x >= 0) & (x <= 1)).all()):
        if binarize in ("dynamic", "fixed") or not grey_ok:
            name = type(model.likelihood).__name__
            raise ValueError(
                f"{dataset.name} holds real values in [{x.min().item():g}, {x.max().item():g}] "
                f"(tabular rows?), which binarization and the {name} likelihood cannot take: "
                "use --likelihood normal (or laplace) and --binarize none"
            )
        return "none"
    if binarize == "auto":
        return "none" if grey_ok or dataset.is_binary else "dynamic"
    if binarize == "none" and not grey_ok and not dataset.is_binary:
        name = type(model.likelihood).__name__
        raise ValueError(
            f"the {name} likelihood needs 0/1 data, but binarize='none' keeps the grey levels "
            f"of {dataset.name}: use binarize 'dynamic' or 'fixed', or a grey-level likelihood "
            "(--likelihood cbernoulli)"
        )
    return binarize


def data_budget(train_config: TrainConfig, device: torch.device) -> float | None:
    """Bytes the training images may take on ``device`` (``--data-memory``; by default half
    the free memory of a CUDA device, no limit on the CPU)."""
    if train_config.data_memory is not None:
        return train_config.data_memory * 2**30
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2
    return None


def build(
    model_config: ModelConfig, train_config: TrainConfig, dataset: data.Dataset | None = None
) -> Run:
    """Load data and build model, guide and trainer on the configured device (no training)."""
    device = distributed.device_for(resolve_device(train_config.device))
    set_seed(distributed.rank_seed(train_config.seed))  # rank 0 (one process): the seed
    if dataset is None:
        # a path spec is recorded where the data were found (moved: under --data-dir)
        spec = data.locate(train_config.dataset, train_config.data_dir)
        train_config = replace(train_config, dataset=spec)
        with distributed.loading_data():  # a rank that cannot load them tells the others
            dataset = data.load(spec, train_config.data_dir, train_config.image_size)
    else:  # a data set given as an object: the run records its name, not the default's
        train_config = replace(train_config, dataset=dataset.name)
    dataset = dataset.subset(train_config.train_size, train_config.test_size)
    fingerprint = dataset.fingerprint()
    distributed.check_same_data(dataset, fingerprint)  # torchrun: every rank has the same data
    kind = kind_of(model_config.model)
    model_config = replace(
        model_config,
        x_dim=dataset.x_dim,
        image_shape=dataset.image_shape,
        num_classes=kind.num_classes(model_config, dataset),
    )
    model, guide = build_in_memory(kind, model_config)
    binarize = resolve_binarize(train_config.binarize, model, dataset)
    held = None
    if train_config.val_size is not None:  # out of the training data, binarized as test data
        dataset, held = validation_split(dataset, train_config.val_size, train_config.seed)
        held = data.prepare(held, binarize, seed=train_config.seed + 3).to(device)
    dataset = data.prepare(dataset, binarize, seed=train_config.seed)
    dataset = dataset.to(device, data_budget(train_config, device))
    evaluate.check_data(model, dataset.test)  # the training data: by the trainer
    validation = None
    if held is not None:  # a data set whose test split is the validation data
        evaluate.check_data(model, held.test)
        validation = replace(
            dataset,
            test=held.test,
            test_labels=held.test_labels,
            test_attributes=held.test_attributes,
            test_factors=held.test_factors,
        )
    model.to(device)
    guide.to(device)
    for line in kind.warnings(model_config, train_config):
        say(line)
    trainer = Trainer(model, guide, train_config, device)
    train_data, test_data = kind.views(dataset, train_config, model_config.num_classes)
    # the kind's view of the validation data: as of test data (and the same code)
    val_data = (
        None
        if validation is None
        else kind.views(validation, train_config, model_config.num_classes)[1]
    )
    return Run(
        model_config,
        train_config,
        model,
        guide,
        trainer,
        dataset,
        binarize,
        None,
        train_data,
        test_data,
        fingerprint,
        validation=validation,
        val_data=val_data,
    )


def train(
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    hooks: Sequence[Hook | RunStartHook] = (),
    progress: bool | None = None,
    dataset: data.Dataset | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Train (or, with ``resume``, continue) a run in folder ``out``, then evaluate it and write
    its figures. Returns the run and the evaluation summary. A new run refuses an ``out``
    holding files. Resuming, the configs may be None (the saved ones are used); given ones may
    differ from the saved ones only in :data:`~pyro_vae.config.RESUMABLE` (the changes are
    logged in ``out/resume.log``), and a run continues to ``train_config.epochs``. Besides the
    trainer's hook methods (``on_step``, ``on_epoch``), a hook may have
    ``on_run_start(run)``, called with the built run (data included) before training. The
    process holds ``out`` meanwhile (:class:`~pyro_vae.runfolder.FolderLock`): another
    process training, resuming or saving into it is refused."""
    out = Path(out)
    created = not out.exists()
    made = [out, *(f for f in out.parents if not f.exists())]  # what the lock's mkdir makes
    lock = FolderLock(out, enabled=writes_files())
    lock.acquire()  # before anything is read or written: a second process is refused here
    try:
        return _train_in_folder(model_config, train_config, out, resume, hooks, progress, dataset)
    except BaseException as e:
        lock.release()
        # a run refused or stopped before its first epoch leaves no empty folder behind (one
        # found not writable is left as the probe found it)
        gone = created and lock.enabled and not isinstance(e, NotWritable)
        for folder in made if gone else []:  # out, then the parents made for it
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        lock.release()


def _train_in_folder(
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    out: Path,
    resume: bool,
    hooks: Sequence[Hook | RunStartHook],
    progress: bool | None,
    dataset: data.Dataset | None,
) -> tuple[Run, dict[str, Any]]:
    """:func:`train` once the folder is held."""
    ckpt_path = out / "checkpoint.pt"
    changes: dict[str, tuple[Any, Any]] = {}
    saved: dict[str, Any] | None = None
    if resume:
        saved = load_checkpoint(ckpt_path)
        model_config, train_config, changes = resumed_configs(
            saved, model_config, train_config, out
        )
    elif ckpt_path.exists():
        raise FileExistsError(
            f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out"
        )
    elif out.is_dir() and (others := sorted(p.name for p in out.iterdir() if p.name != LOCK)):
        raise FileExistsError(
            f"{out} holds files but no checkpoint ({', '.join(others[:3])}"
            f"{' ...' if len(others) > 3 else ''}): choose an empty or new --out, or delete them"
        )
    elif model_config is None or train_config is None:
        raise ValueError("a new run needs its model_config and train_config")
    train_config.check_packages()  # before the data load, and before --out is written
    if distributed.launched():
        distributed.init(train_config.device, train_config.dist_timeout)
        # one all-gather, also a barrier: every rank has looked at the folder before rank 0
        # writes in it, and ranks started with other options are refused, all alike
        options = distributed.start_options((model_config, train_config), out, saved)
        distributed.check_same_start(options)
    world = distributed.world()
    if world.main:
        check_writable(out)
    return _train(out, model_config, train_config, saved, hooks, progress, dataset, changes)


def _train(
    out: Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    saved: dict[str, Any] | None,
    hooks: Sequence[Hook | RunStartHook],
    progress: bool | None,
    dataset: data.Dataset | None,
    changes: dict[str, tuple[Any, Any]],
) -> tuple[Run, dict[str, Any]]:
    """:func:`train` once the folder is checked (``saved``: the checkpoint resumed from)."""
    world = distributed.world()
    ckpt_path = out / "checkpoint.pt"
    run = build(model_config, train_config, dataset)
    run.out = out
    if saved is not None:
        check_same_data(saved, run.data, run.data_fingerprint)
        run.trainer.load_state_dict(saved["trainer"], str(ckpt_path))
        log_changes(out, run.trainer.epoch, changes)
    else:  # pieces that read the data first (the perceptual likelihood's feature network)
        for module in run.model.modules():
            if callable(getattr(module, "on_data", None)):
                module.on_data(run.data)
    for hook in hooks:
        if isinstance(hook, RunStartHook):
            hook.on_run_start(run)
    say(f"output folder: {out}")
    say(
        f"data: {run.data.name} ({run.data.train.shape[0]} train / "
        + (f"{run.validation.test.shape[0]} validation / " if run.validation else "")
        + f"{run.data.test.shape[0]} test, "
        f"binarization: {run.binarize}) from {run.data.source}; device: {run.trainer.device}"
        + (
            f"; {world.size} processes ({world.backend}), batch {train_config.batch_size} each, "
            f"{train_config.batch_size * world.size} per step"
            if world.size > 1
            else ""
        )
    )
    # the kind's hooks add their columns to the epoch's row before RunFolder writes it
    # the loggers (rank 0): MLflow first, its store may refuse before anything is written
    tracker = MLflow(out, run) if train_config.mlflow and world.main else None
    board = TensorBoard(out, run) if train_config.tensorboard and world.main else None
    loggers = [logger for logger in (tracker, board) if logger is not None]
    try:
        run.trainer.fit(
            run.train_data,
            train_config.epochs,
            # with --val-size the validation data are scored each epoch, the test data at the end
            test=None if run.val_data is not None else run.test_data,
            val=run.val_data,
            dynamic=run.binarize == "dynamic",
            hooks=[
                *run.kind.hooks(run),
                *([BitsPerDim(run)] if eight_bit(run) else []),
                *hooks,
                *watched(run),  # after the hooks that add the watched column
                *([KeepBest(run, out)] if train_config.keep_best and world.main else []),
                *([RunFolder(run, out)] if world.main else []),  # rank 0 writes, the others wait
                *loggers,
            ],
            progress=progress if world.main else False,
        )
        result = finish(run, out, *loggers)
    except BaseException as e:
        for logger in loggers:  # MLflow's run ends FAILED (or KILLED), not RUNNING forever
            with contextlib.suppress(Exception):
                logger.close(e)
        raise
    say(f"output folder: {out}")
    return run, result


def watched(run: Run) -> list[Watch]:
    """The hook following the metric --keep-best, --early-stop and --lr-schedule plateau read:
    the kind's (``best_metric``, by default the validation ELBO) with --val-size, else the
    training ELBO (for the plateau schedule)."""
    if run.val_data is not None:
        return [Watch(*run.kind.best_metric)]
    if run.train_config.lr_schedule == "plateau":
        return [Watch("train_elbo", "max")]
    return []


def say(line: str) -> None:
    """A line on stderr, from rank 0 only in a distributed run."""
    if distributed.world().main:
        print(line, file=sys.stderr)


class NotWritable(OSError):
    """A run's output folder cannot be written into."""


def check_writable(out: Path) -> None:
    """Make ``out`` and write a probe file into it before any training, so that a read-only
    folder or a full disk is one line at the start, not an error after the first epoch."""
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise NotWritable(
            f"cannot write into {out} ({e.strerror or e}): choose a writable --out with free space"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def evaluation(run: Run, test: Data | None = None, num_samples: int | None = None) -> dict:
    """The test ELBO, importance-sampled log p(x), the kind's numbers and what they were
    measured on (``test``: the run's test data by default)."""
    test = run.test_data if test is None else test
    k = run.train_config.ll_samples if num_samples is None else num_samples
    result = evaluate.summary(run.model, run.guide, test, k)  # sharded over ranks, if several
    if not distributed.world().main:
        return result
    if eight_bit(run):
        levels = getattr(run.model.likelihood, "levels", None)
        for nats, bpd in (("elbo", "elbo_bits_per_dim"), ("log_likelihood", "bits_per_dim")):
            if nats in result:
                result[bpd] = evaluate.bits_per_dim(-result[nats], run.data.x_dim, levels)
        result["bits_per_dim_kind"] = (
            "probability mass over the 256 levels"
            if levels == 256
            else "density + log 255 per dimension (no dequantization)"
        )
    result |= run.kind.results(run, test)
    result |= describe(run)
    if run.trainer.best is not None:  # --val-size (or the plateau schedule's training ELBO)
        best = run.trainer.best
        result["watched"] = {
            "metric": best["metric"],
            "best": best["value"],
            "best_epoch": best["epoch"],
            "epochs_since_best": best["since"],
            **({"validation_data": len(run.validation.test)} if run.validation else {}),
            **({"best_checkpoint": "best.pt"} if has_best(run) else {}),
            **({"stopped_early": stopped_early(run)} if run.train_config.early_stop else {}),
        }
    return result


def has_best(run: Run) -> bool:
    """Whether --keep-best wrote best.pt into the run's folder (with --keep-best turned on
    by a resume, only once the watched metric improved after it)."""
    return run.train_config.keep_best and run.out is not None and (run.out / "best.pt").is_file()


def stopped_early(run: Run) -> bool:
    """Whether --early-stop ended the run before its --epochs."""
    best, patience = run.trainer.best, run.train_config.early_stop
    return bool(
        best is not None
        and patience is not None
        and best["since"] >= patience
        and run.trainer.epoch < run.train_config.epochs
    )


def eight_bit(run: Run) -> bool:
    """Whether the run models 8-bit levels (scored in bits per dimension as well as nats) with a
    normalised likelihood: a pseudo-likelihood's pseudo-ELBO has no bits per dimension."""
    return run.binarize == "none" and run.data.is_8bit and evaluate.normalised(run.model)


def finish(run: Run, out: Path, *loggers: TensorBoard | MLflow | None) -> dict[str, Any]:
    """Evaluate on the test set and write evaluation.json and the figures (also to the
    ``loggers``: TensorBoard, MLflow, which are closed then)."""
    result = evaluation(run)
    if not distributed.world().main:  # rank 0 writes; the others wait for it
        distributed.barrier()
        return result
    if run.trainer.history:
        result["seconds_per_epoch_median"] = statistics.median(
            r["seconds"] for r in run.trainer.history
        )
    write_json(out / "evaluation.json", result)
    files = write_figures(run, out)
    for logger in loggers:
        if logger is not None:
            logger.finish(out, files, result, run.trainer.epoch)
    print(format_summary(result, run.kind), file=sys.stderr)
    distributed.barrier()
    return result


def load(
    path: str | os.PathLike,
    device: str = "auto",
    dataset: bool | data.Dataset | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    spec: str | None = None,
    other_data: bool = False,
) -> Run:
    """Restore a run from its checkpoint (model, guide, optimizer, RNG).

    ``dataset``: ``None`` (default) loads the run's test data when they can be found and
    restores the model without them otherwise (a run trained on a user's own data loads
    anywhere: ``run.test_data`` is then None); ``True`` requires them; ``False`` skips them;
    a :class:`~pyro_vae.data.Dataset` uses that one. ``spec`` (``folder:PATH``, ...) and
    ``data_dir`` say where the run's data are now, if they moved; the data's fingerprint must
    still match the run's, unless ``other_data`` (score another data set of the same shape on
    purpose: its test split, every image of a folder or array, recorded as other data in the
    results)."""
    saved = load_checkpoint(path)
    model_config = from_dict(ModelConfig, saved["model_config"])
    train_config = replace(from_dict(TrainConfig, saved["train_config"]), device=device)
    if data_dir is not None:
        train_config = replace(train_config, data_dir=str(data_dir))
    if spec is not None:
        train_config = replace(train_config, dataset=spec)
    if other_data:
        if spec is None:
            raise ValueError("--other-data scores another data set: give it with --dataset SPEC")
        train_config = replace(train_config, test_size=None, val_size=None)
    ds: data.Dataset | None = dataset if isinstance(dataset, data.Dataset) else None
    if dataset is True and train_config.dataset == data.IN_MEMORY:
        raise data.DataError(
            f"{path} was trained on data given from Python, which a run folder does not hold: "
            "score data with --dataset SPEC --other-data, or with run.elbo(x) in Python"
        )
    if dataset is None and train_config.dataset == data.IN_MEMORY:
        print(
            f"note: {path} was trained on data given from Python: restored without them",
            file=sys.stderr,
        )
        dataset = False
    if dataset is None or (dataset is True and other_data):
        try:
            spec_now = data.locate(train_config.dataset, train_config.data_dir)
            ds = data.load(spec_now, train_config.data_dir, train_config.image_size)
            if ds.x_dim != model_config.x_dim or (other_data and ds.image_shape != _shape(saved)):
                raise data.DataError(
                    f"{ds.name} holds data of shape {ds.image_shape}, the run was trained on "
                    f"{_shape(saved)}: give data of the run's shape"
                )
            if not other_data:
                used = ds.subset(train_config.train_size, train_config.test_size)
                check_same_data(saved, used, used.fingerprint())
            elif data.path_spec(spec_now) is not None:
                ds = every_image_as_test(ds)
        except (data.DataError, ValueError) as e:
            if dataset is True or spec is not None or data_dir is not None:
                raise
            print(
                f"note: loading {path} without its data ({str(e).splitlines()[0]})", file=sys.stderr
            )
            dataset = False
    if dataset is False:
        ds = _placeholder(saved, model_config)
        train_config = replace(train_config, binarize="none", labels=0, val_size=None)
    run = build(model_config, train_config, ds)
    if dataset is True and not other_data:
        check_same_data(saved, run.data, run.data_fingerprint)
    run.trainer.load_state_dict(saved["trainer"], str(path))
    run.out = Path(path).parent
    run.other_data = other_data
    if dataset is False:  # what the run was trained on, as recorded
        run.binarize = saved["data"]["binarize"]
        run.test_data = None
        run.data = replace(run.data, source=saved["data"].get("source", run.data.source))
        run.data_fingerprint = saved["data"].get("fingerprint")
    return run


def every_image_as_test(ds: data.Dataset) -> data.Dataset:
    """A user's folder or array scored as a new test set: every image in it, not the seeded
    split made for training."""
    both = lambda a, b: None if a is None or b is None else torch.cat([a, b])  # noqa: E731
    return replace(
        ds,
        test=both(ds.train, ds.test),
        test_labels=both(ds.train_labels, ds.test_labels),
        test_attributes=both(ds.train_attributes, ds.test_attributes),
    )


def _shape(saved: dict[str, Any]) -> tuple[int, ...]:
    return tuple(saved["data"]["image_shape"])


def _placeholder(saved: dict[str, Any], model_config: ModelConfig) -> data.Dataset:
    """A stand-in with the run's shapes and classes, for restoring a model without its data."""
    shape = _shape(saved)
    k = model_config.num_classes
    empty = torch.zeros(k, model_config.x_dim)
    labels = torch.arange(k)  # one datum per class: the kind counts the run's classes again
    return data.Dataset(saved["data"]["name"], empty, empty, shape, "(not loaded)", labels, labels)


__all__ = ["Run", "build", "evaluation", "finish", "load", "train"]
