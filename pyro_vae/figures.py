"""The figures of a run folder: the learning curves, then the ones the model kind chooses."""

from __future__ import annotations

from pathlib import Path

from . import evaluate, plots
from .kinds import RunView


def write_figures(run: RunView, out: Path) -> list[Path]:
    """curves.png (when trained here) and the kind's figures (reconstructions, samples, ...)."""
    files = []
    if run.trainer.history:
        elbo = evaluate.elbo_kind(run.model)
        files.append(plots.save_curves(out / "curves.png", run.trainer.history, elbo))
    return files + run.kind.figures(run, out)
