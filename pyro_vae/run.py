"""A training run: data + model/guide + Trainer + checkpoint + figures in one output folder.

The CLI's ``train`` and every experiment script compose these functions; none has its own loop.
Folder contents: ``checkpoint.pt``, ``metrics.csv`` (per-epoch ELBOs), ``curves.png``,
``reconstructions.png``, ``prior_samples.png`` and ``evaluation.json``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

from . import checkpoint, data, evaluate, plots, predictive
from .config import ModelConfig, TrainConfig, from_dict, to_dict
from .data import TrainingData
from .evaluate import Data
from .likelihoods import accepts_grey_levels
from .runtime import resolve_device, set_seed
from .train import Hook, Trainer


@dataclass
class Run:
    """Everything a finished or restored run holds."""

    model_config: ModelConfig
    train_config: TrainConfig
    model: nn.Module
    guide: nn.Module
    trainer: Trainer
    data: data.Dataset
    binarize: str
    out: Path | None = None
    train_data: TrainingData | None = None  # what the trainer iterates over (see VIEWS)
    test_data: Data | None = None  # what the model and guide are scored on

    @property
    def labelled(self) -> bool:
        return self.model_config.model != "vae"


def resolve_binarize(binarize: str, model: nn.Module, dataset: data.Dataset) -> str:
    """``auto`` -> ``dynamic`` for 0/1 likelihoods, ``none`` for grey-level ones; refuse grey
    levels for a 0/1 likelihood."""
    grey_ok = accepts_grey_levels(model.likelihood, dataset.x_dim)
    if binarize == "auto":
        return "none" if grey_ok or dataset.is_binary else "dynamic"
    if binarize not in data.BINARIZATIONS:
        raise ValueError(
            f"unknown binarization {binarize!r}; choose one of {('auto', *data.BINARIZATIONS)}"
        )
    if binarize == "none" and not grey_ok and not dataset.is_binary:
        name = type(model.likelihood).__name__
        raise ValueError(
            f"the {name} likelihood needs 0/1 data, but binarize='none' keeps the grey levels "
            f"of {dataset.name}: use binarize 'dynamic' or 'fixed', or a grey-level likelihood "
            "(--likelihood cbernoulli)"
        )
    return binarize


def _unlabelled(ds: data.Dataset, tc: TrainConfig, k: int) -> tuple[TrainingData, Data]:
    return ds.train, ds.test


def _labelled(ds: data.Dataset, tc: TrainConfig, k: int) -> tuple[TrainingData, Data]:
    train_y, test_y = data.one_hot(ds.train_labels, k), data.one_hot(ds.test_labels, k)
    return (ds.train, train_y), (ds.test, test_y)


def _semi_supervised(ds: data.Dataset, tc: TrainConfig, k: int) -> tuple[TrainingData, Data]:
    if tc.labels is None:
        raise ValueError(
            "--model m2 needs --labels N: how many training labels to keep (balanced over the "
            "classes; 0 trains without labels)"
        )
    idx = data.balanced_subset(ds.train_labels, tc.labels, tc.seed) if tc.labels else None
    keep = torch.zeros(ds.train.shape[0], dtype=torch.bool, device=ds.train.device)
    if idx is not None:
        keep[idx] = True
    train = data.SemiSupervised(
        ds.train[keep],
        data.one_hot(ds.train_labels[keep], k),
        ds.train[~keep],
        repeats=tc.labelled_repeats,
    )
    return train, ds.test


# Per model kind: the training data (batches passed to model and guide) and the test data.
VIEWS = {"vae": _unlabelled, "cvae": _labelled, "m2": _semi_supervised}


def _num_classes(model_config: ModelConfig, dataset: data.Dataset) -> int:
    if model_config.model == "vae":
        return model_config.num_classes
    if dataset.train_labels is None or dataset.test_labels is None:
        raise ValueError(
            f"--model {model_config.model} needs labelled data and {dataset.name} has no "
            "labels: use --dataset mnist or fashion-mnist"
        )
    return int(max(dataset.train_labels.max(), dataset.test_labels.max())) + 1


def build(
    model_config: ModelConfig, train_config: TrainConfig, dataset: data.Dataset | None = None
) -> Run:
    """Load data and build model, guide and trainer on the configured device (no training)."""
    device = resolve_device(train_config.device)
    set_seed(train_config.seed)
    if dataset is None:
        dataset = data.load(train_config.dataset, train_config.data_dir)
    dataset = dataset.subset(train_config.train_size, train_config.test_size)
    model_config = replace(
        model_config,
        x_dim=dataset.x_dim,
        image_shape=dataset.image_shape,
        num_classes=_num_classes(model_config, dataset),
    )
    model, guide = model_config.build()
    binarize = resolve_binarize(train_config.binarize, model, dataset)
    dataset = data.prepare(dataset, binarize, seed=train_config.seed).to(device)
    evaluate.check_data(model, dataset.test)
    if binarize == "none":
        evaluate.check_data(model, dataset.train)
    model.to(device)
    guide.to(device)
    if model_config.model == "m2" and train_config.elbo != "enum":
        print(
            f"warning: --model m2 with --elbo {train_config.elbo} samples the class y of "
            "unlabelled digits (a high-variance score-function gradient); --elbo enum sums it "
            "out exactly",
            file=sys.stderr,
        )
    trainer = Trainer(model, guide, train_config, device)
    train_data, test_data = VIEWS[model_config.model](
        dataset, train_config, model_config.num_classes
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
    )


class TestAccuracy:
    """Training hook: adds ``test_accuracy`` of the guide's classifier q(y|x) to each row."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        row["test_accuracy"] = evaluate.accuracy(
            self.run.guide, self.run.data.test, self.run.data.test_labels
        )


class RunFolder:
    """Training hook: after each epoch, rewrite metrics.csv and the checkpoint atomically."""

    def __init__(self, run: Run, out: Path) -> None:
        self.run, self.out = run, out

    def on_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        write_metrics(self.out / "metrics.csv", trainer.history)
        save_checkpoint(self.run, self.out / "checkpoint.pt")
        print(
            f"epoch {row['epoch']}/{self.run.train_config.epochs}: train ELBO "
            f"{row['train_elbo']:.2f}, test ELBO {row['test_elbo']:.2f} nats"
            + (f", test accuracy {row['test_accuracy']:.4f}" if "test_accuracy" in row else "")
            + f" ({row['seconds']:.1f} s)",
            file=sys.stderr,
        )


def save_checkpoint(run: Run, path: Path) -> Path:
    return checkpoint.save(
        path,
        {
            "model_config": to_dict(run.model_config),
            "train_config": to_dict(run.train_config),
            "data": {
                "name": run.data.name,
                "image_shape": list(run.data.image_shape),
                "binarize": run.binarize,
                "source": run.data.source,
            },
            "trainer": run.trainer.state_dict(),
        },
    )


def write_metrics(path: Path, history: Sequence[dict[str, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    hooks: Sequence[Hook] = (),
    progress: bool | None = None,
    dataset: data.Dataset | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Train (or, with ``resume``, continue) a run in folder ``out``, then evaluate it and write
    its figures. Returns the run and the evaluation summary. Besides the trainer's hook methods
    (``on_step``, ``on_epoch``), a hook may have ``on_run_start(run)``, called with the built
    run (data included) before training."""
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if resume:
        saved = checkpoint.load(ckpt_path)
        model_config = from_dict(ModelConfig, saved["model_config"])
        train_config = replace(
            from_dict(TrainConfig, saved["train_config"]),
            epochs=train_config.epochs,
            device=train_config.device,
            data_dir=train_config.data_dir or saved["train_config"].get("data_dir"),
        )
    elif ckpt_path.exists():
        raise FileExistsError(
            f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out"
        )
    run = build(model_config, train_config, dataset)
    run.out = out
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        run.trainer.load_state_dict(saved["trainer"], str(ckpt_path))
    for hook in hooks:
        if hasattr(hook, "on_run_start"):
            hook.on_run_start(run)
    print(f"output folder: {out}", file=sys.stderr)
    print(
        f"data: {run.data.name} ({run.data.train.shape[0]} train / {run.data.test.shape[0]} test, "
        f"binarization: {run.binarize}) from {run.data.source}; device: {run.trainer.device}",
        file=sys.stderr,
    )
    # the run's own hooks add their columns to the epoch's row before RunFolder writes it
    own = [TestAccuracy(run)] if hasattr(run.guide, "classify") else []
    run.trainer.fit(
        run.train_data,
        train_config.epochs,
        test=run.test_data,
        dynamic=run.binarize == "dynamic",
        hooks=[*own, *hooks, RunFolder(run, out)],
        progress=progress,
    )
    result = finish(run, out)
    print(f"output folder: {out}", file=sys.stderr)
    return run, result


def finish(run: Run, out: Path) -> dict[str, Any]:
    """Evaluate on the test set and write evaluation.json and the figures."""
    k = run.train_config.ll_samples
    result = evaluate.summary(run.model, run.guide, run.test_data, k)
    if hasattr(run.guide, "classify") and run.data.test_labels is not None:
        result["accuracy"] = evaluate.accuracy(run.guide, run.data.test, run.data.test_labels)
    history = run.trainer.history
    result |= describe(run)
    if history:
        result["seconds_per_epoch_median"] = statistics.median(r["seconds"] for r in history)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    write_figures(run, out)
    print(format_summary(result), file=sys.stderr)
    return result


def describe(run: Run) -> dict[str, Any]:
    return {
        "dataset": run.data.name,
        "data_source": run.data.source,
        "binarization": run.binarize,
        "epochs": run.trainer.epoch,
        "model_config": to_dict(run.model_config),
        "device": str(run.trainer.device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
        },
    }


def format_summary(result: dict[str, Any]) -> str:
    line = (
        f"{result['dataset']} test ({result['n_data']} data, {result['binarization']} "
        f"binarization, {result['epochs']} epochs): ELBO {result['elbo']:.2f} nats"
    )
    given = " | y" if result.get("model_config", {}).get("model") == "cvae" else ""
    if "log_likelihood" in result:
        line += (
            f", log p(x{given}) {result['log_likelihood']:.2f} ± "
            f"{result['log_likelihood_stderr']:.2f} nats (k={result['importance_samples']} "
            "importance samples)"
        )
    if "accuracy" in result:
        line += f", accuracy of q(y|x) {result['accuracy']:.4f}"
    return line


def write_figures(run: Run, out: Path, n: int = 10) -> None:
    shape = run.data.image_shape
    if run.trainer.history:
        plots.save_curves(out / "curves.png", run.trainer.history)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(run.data.test.shape[0], generator=gen)[:n].to(run.data.test.device)
    x = run.data.test[idx]
    if run.labelled:
        write_conditional_figures(run, out, idx)
        return
    recon = predictive.reconstruct(run.model, run.guide, x)
    plots.save_grid(
        out / "reconstructions.png",
        torch.cat([x, recon]),
        shape,
        ncol=n,
        title="test data (top) and reconstructions E[x|z], z = mean of q(z|x) (bottom)",
    )
    write_prior_samples(run.model, shape, out / "prior_samples.png")


def write_conditional_figures(run: Run, out: Path, idx: torch.Tensor, draws: int = 10) -> None:
    """Label-aware models: a class-conditional grid (one row per class, columns are prior
    draws of z) and style transfer (each test digit re-decoded with every label)."""
    shape, k = run.data.image_shape, run.model_config.num_classes
    x = run.data.test[idx]
    y = data.one_hot(run.data.test_labels[idx], k)
    transfer = predictive.style_transfer(run.model, run.guide, x, y)
    plots.save_grid(
        out / "reconstructions.png",
        torch.cat([x, transfer[y.bool()]]),  # decoded with its own label
        shape,
        ncol=len(x),
        title="test data (top) and reconstructions E[x|z,y], z = mean of q(z|x,y) (bottom)",
    )
    write_samples(run, out / "prior_samples.png", draws)
    plots.save_figure(plots.style_transfer_figure(x, transfer, shape), out / "style_transfer.png")


def write_samples(run: Run, path: Path, draws: int = 10) -> None:
    """Prior samples: for a label-aware model a grid with one row per class."""
    if not run.labelled:
        write_prior_samples(run.model, run.data.image_shape, path)
        return
    grid = predictive.class_conditional(run.model, run.model_config.num_classes, draws)
    plots.save_grid(
        path,
        grid["mean"],
        run.data.image_shape,
        ncol=draws,
        title="E[x|z,y], z ~ p(z): one row per class y, one column per draw",
    )


def write_prior_samples(model: nn.Module, image_shape: Sequence[int], path: Path) -> None:
    try:
        draws = predictive.prior_predictive(model, 100)
    except NotImplementedError:  # an improper prior (e.g. priors.Flat) cannot be sampled
        print(f"no {path.name}: the prior cannot be sampled", file=sys.stderr)
        return
    plots.save_grid(path, draws["mean"], image_shape, ncol=10, title="E[x|z], z ~ p(z)")


def load(path: str | os.PathLike, device: str = "auto", dataset: bool = True) -> Run:
    """Restore a run from its checkpoint (model, guide, optimizer, RNG), with its test data."""
    saved = checkpoint.load(path)
    model_config = from_dict(ModelConfig, saved["model_config"])
    train_config = replace(from_dict(TrainConfig, saved["train_config"]), device=device)
    ds = None
    if not dataset:
        shape = tuple(saved["data"]["image_shape"])
        empty = torch.zeros(1, model_config.x_dim)
        label = torch.tensor([model_config.num_classes - 1])
        ds = data.Dataset(saved["data"]["name"], empty, empty, shape, "(not loaded)", label, label)
        train_config = replace(train_config, binarize="none", labels=0)
    run = build(model_config, train_config, ds)
    run.trainer.load_state_dict(saved["trainer"], str(path))
    run.out = Path(path).parent
    if not dataset:
        run.binarize = saved["data"]["binarize"]
    return run


__all__ = ["Run", "build", "finish", "load", "train"]
