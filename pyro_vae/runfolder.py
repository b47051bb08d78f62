"""The run folder: checkpoint payload, metrics.csv, evaluation.json and the console lines.

``checkpoint.pt`` holds the configs (so the run is rebuilt from the file alone, a user's
pieces by their import paths), the data's name and shape and the trainer's state; it is
rewritten atomically after every epoch by the :class:`RunFolder` hook.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from . import checkpoint, evaluate
from .config import to_dict
from .configfile import write_run_config
from .loggers import TensorBoard  # noqa: F401  (its home was here: still importable from here)
from .train import ROW, VAL_ROW


class RunFolder:
    """Training hook: after each epoch, rewrite metrics.csv and the checkpoint atomically."""

    def __init__(self, run: Any, out: Path) -> None:
        self.run, self.out = run, out

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        write_metrics(self.out / "metrics.csv", trainer.history)
        save_checkpoint(self.run, self.out / "checkpoint.pt")
        write_run_config(self.out, self.run.model_config, self.run.train_config)
        watched = "val" if "val_elbo" in row else "test"  # --val-size: test at the end only
        extra = "".join(
            f", {key.replace('_', ' ')} {value:{'.3g' if key == 'lr' else '.4f'}}"
            for key, value in row.items()
            if key not in BASE_COLUMNS and key not in VAL_ROW
        )
        print(
            f"epoch {row['epoch']}/{self.run.train_config.epochs}: train ELBO "
            f"{row['train_elbo']:.2f}, {watched} ELBO {row[f'{watched}_elbo']:.2f} nats{extra} "
            f"({row['seconds']:.1f} s)",
            file=sys.stderr,
        )


class KeepBest:
    """Training hook (``--keep-best``): after an epoch that improved the watched metric (see
    :class:`~pyro_vae.train.Watch`, which must come before it), write ``best.pt``: the run's
    checkpoint as of that epoch, atomically (``pyro-vae evaluate run/best.pt`` reads it). Put
    it before :class:`RunFolder`: a run stopped between the two writes redoes that epoch."""

    def __init__(self, run: Any, out: Path) -> None:
        self.run, self.path = run, out / "best.pt"

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        if trainer.best is not None and trainer.best["epoch"] == row["epoch"]:
            save_checkpoint(self.run, self.path)


class BitsPerDim:
    """Training hook for 8-bit data: adds ``test_bits_per_dim``, the test ELBO in bits per
    dimension (see :func:`pyro_vae.evaluate.bits_per_dim`)."""

    def __init__(self, run: Any) -> None:
        self.x_dim = run.data.x_dim
        self.levels = getattr(run.model.likelihood, "levels", None)

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        for split in ("test", "val") if "val_elbo" in row else ("test",):
            row[f"{split}_bits_per_dim"] = evaluate.bits_per_dim(
                -row[f"{split}_elbo"], self.x_dim, self.levels
            )


BASE_COLUMNS = frozenset(ROW)  # the trainer's own; the console line adds the hooks' others


def save_checkpoint(run: Any, path: Path) -> Path:
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
                "fingerprint": run.data_fingerprint,
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


def write_json(path: Path, numbers: dict[str, Any]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(numbers, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    return path


def describe(run: Any) -> dict[str, Any]:
    """What a result was measured on: data, binarization, epochs, config, device, versions."""
    other = {"other_data": True} if getattr(run, "other_data", False) else {}
    return {
        "dataset": run.data.name,
        "data_source": run.data.source,
        **other,
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


def format_summary(result: dict[str, Any], kind: Any) -> str:
    """One line: the test ELBO, log p(x) with its standard error and k, and the kind's own."""
    other = " (other data than the run was trained on)" if result.get("other_data") else ""
    line = (
        f"{result['dataset']}{other} test ({result['n_data']} data, {result['binarization']} "
        f"binarization, {result['epochs']} epochs): ELBO {result['elbo']:.2f} nats"
    )
    if "log_likelihood" in result:
        line += (
            f", log p(x{kind.conditioned_on}) {result['log_likelihood']:.2f} ± "
            f"{result['log_likelihood_stderr']:.2f} nats (k={result['importance_samples']} "
            "importance samples)"
        )
    if "bits_per_dim" in result or "elbo_bits_per_dim" in result:
        bpd = result.get("bits_per_dim", result.get("elbo_bits_per_dim"))
        line += f", {bpd:.3f} bits/dim"
    return line + kind.summary(result)
