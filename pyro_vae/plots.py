"""Figures written by runs: image grids and learning curves (matplotlib, no display)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

GAP, GAP_SHADE = 2, 0.15  # pixels between images, and their shade (0 white, 1 black)


def tile(images: Tensor, image_shape: Sequence[int], ncol: int) -> Tensor:
    """Arrange (n, x_dim) images into one array, ``ncol`` per row, with light-grey gaps."""
    h, w = image_shape
    n = images.shape[0]
    nrow = math.ceil(n / ncol)
    canvas = torch.full((nrow * (h + GAP) - GAP, ncol * (w + GAP) - GAP), GAP_SHADE)
    for i, img in enumerate(images.detach().float().cpu().reshape(n, h, w)):
        r, c = divmod(i, ncol)
        canvas[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = img
    return canvas


def save_grid(
    path: str | os.PathLike,
    images: Tensor,
    image_shape: Sequence[int],
    ncol: int = 10,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Save (n, x_dim) images in [0, 1] as one grey grid PNG."""
    canvas = tile(images, image_shape, ncol)
    h = image_shape[0]
    fig_w = max(3.0, canvas.shape[1] / 28 * 0.6)
    fig_h = canvas.shape[0] / 28 * 0.6 + (0.4 if title else 0.1)
    fig, ax = plt.subplots(figsize=(fig_w + (1.0 if row_labels else 0.0), fig_h))
    ax.imshow(canvas.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([r * (h + GAP) + h / 2 for r in range(len(row_labels))], row_labels)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_curves(path: str | os.PathLike, history: Sequence[dict[str, float]]) -> Path:
    """Train and test ELBO (nats per datum) against epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_elbo", "train"), ("test_elbo", "test")):
        values = [row[key] for row in history]
        if any(math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("ELBO (nats per datum)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
