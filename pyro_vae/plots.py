"""Figures written by runs: image grids and learning curves (matplotlib, no display)."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .inputs import chw

GAP, GAP_SHADE = 2, 0.15  # pixels between images, and their shade (0 white, 1 black)


def tile(images: Tensor, image_shape: Sequence[int], ncol: int) -> Tensor:
    """Arrange (n, x_dim) images in [0, 1] into one array, ``ncol`` per row, with light-grey
    gaps: (rows, cols) for grey images, (rows, cols, 3) RGB for colour ones."""
    c, h, w = chw(image_shape)
    n = images.shape[0]
    nrow = math.ceil(n / ncol)
    # grey images are drawn ink-on-paper (gray_r), colour ones as they are
    shade = GAP_SHADE if c == 1 else 1 - GAP_SHADE
    canvas = torch.full((c, nrow * (h + GAP) - GAP, ncol * (w + GAP) - GAP), shade)
    for i, img in enumerate(images.detach().float().cpu().reshape(n, c, h, w).clamp(0, 1)):
        r, col = divmod(i, ncol)
        canvas[:, r * (h + GAP) : r * (h + GAP) + h, col * (w + GAP) : col * (w + GAP) + w] = img
    return canvas[0] if c == 1 else canvas.permute(1, 2, 0)


def show(ax: plt.Axes, canvas: Tensor) -> None:
    """Draw a :func:`tile` canvas: grey ink on paper, or RGB."""
    if canvas.dim() == 3:
        ax.imshow(canvas.numpy(), interpolation="nearest")
    else:
        ax.imshow(canvas.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")


def save_grid(
    path: str | os.PathLike,
    images: Tensor,
    image_shape: Sequence[int],
    ncol: int = 10,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Save (n, x_dim) images in [0, 1] as one grid PNG (grey or colour, by ``image_shape``)."""
    return _save(grid_figure(images, image_shape, ncol, title, row_labels), path)


def save_image(path: str | os.PathLike, image: Tensor, image_shape: Sequence[int]) -> Path:
    """Save one image (x_dim,) in [0, 1] as a PNG at its own resolution (grey or RGB)."""
    from PIL import Image

    c, h, w = chw(image_shape)
    pixels = image.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    array = pixels.reshape(c, h, w).permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if c == 1 else array).save(path)
    return Path(path)


def grid_figure(
    images: Tensor,
    image_shape: Sequence[int],
    ncol: int = 10,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> plt.Figure:
    """(n, x_dim) images in [0, 1] as one grid, ``ncol`` per row."""
    canvas = tile(images, image_shape, ncol)
    _, h, w = chw(image_shape)
    # about 0.6 inch per 28 pixels, at most 16 inches wide
    inch = min(0.6 / 28, 16.0 / canvas.shape[1])
    fig_w = max(3.0, canvas.shape[1] * inch)
    if title:  # wrapped to the figure's width
        title = "\n".join(textwrap.wrap(title, width=max(30, int(fig_w * 11))))
    fig_h = canvas.shape[0] * inch + (0.15 + 0.25 * (title.count("\n") + 1) if title else 0.1)
    fig, ax = plt.subplots(figsize=(fig_w + (1.6 if row_labels else 0.0), fig_h))
    show(ax, canvas)
    if col_labels:
        ax.set_xticks([c * (w + GAP) + w / 2 for c in range(len(col_labels))], col_labels)
        ax.tick_params(axis="x", length=0, labelsize=8)
    else:
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
    return fig


def manifold_figure(
    images: Tensor,
    image_shape: Sequence[int],
    z_rows: Sequence[float],
    z_cols: Sequence[float],
    labels: tuple[str, str] = ("$z_1$", "$z_2$"),
    title: str | None = None,
) -> plt.Figure:
    """A decoded grid whose rows and columns are labelled with the latent values they decode
    (``z_cols`` along x, ``z_rows`` along y from top to bottom)."""
    n_rows, n_cols = len(z_rows), len(z_cols)
    canvas = tile(images, image_shape, n_cols)
    _, h, w = chw(image_shape)
    size = min(9.0, 0.45 * max(n_rows, n_cols))
    fig, ax = plt.subplots(figsize=(size * w / h * n_cols / max(n_rows, n_cols) + 1, size + 0.8))
    show(ax, canvas)
    step = max(1, n_cols // 10)
    ax.set_xticks(
        [c * (w + GAP) + w / 2 for c in range(0, n_cols, step)],
        [f"{z_cols[c]:.2f}" for c in range(0, n_cols, step)],
        fontsize=7,
        rotation=90,
    )
    step = max(1, n_rows // 10)
    ax.set_yticks(
        [r * (h + GAP) + h / 2 for r in range(0, n_rows, step)],
        [f"{z_rows[r]:.2f}" for r in range(0, n_rows, step)],
        fontsize=7,
    )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def scatter_figure(
    z: Tensor,
    labels: Tensor | None = None,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("$z_1$", "$z_2$"),
    limits: float | None = None,
    circle: float | None = None,
) -> plt.Figure:
    """2-D latent points, coloured by label (with a legend) where labels are given; optionally
    a circle of radius ``circle`` about the origin."""
    z = z.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.5)
    else:
        labels = labels.cpu()
        cmap = plt.get_cmap("tab10")
        for k in labels.unique().tolist():
            sel = labels == k
            ax.scatter(z[sel, 0], z[sel, 1], s=3, alpha=0.6, color=cmap(k % 10), label=str(k))
        ax.legend(markerscale=4, fontsize=8, loc="upper right", title="label", ncol=2)
    if circle is not None:
        ax.add_patch(plt.Circle((0, 0), circle, fill=False, color="k", lw=1, ls="--"))
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_aspect("equal")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def style_transfer_figure(
    x: Tensor, transfer: Tensor, image_shape: Sequence[int], title: str | None = None
) -> plt.Figure:
    """Each datum of ``x`` (batch, x_dim) on the left, then ``transfer`` (batch, classes,
    x_dim): its style decoded with every label, one column per label."""
    k = transfer.shape[1]
    return grid_figure(
        torch.cat([x[:, None], transfer], 1).reshape(-1, x.shape[-1]),
        image_shape,
        ncol=k + 1,
        col_labels=["input", *(str(c) for c in range(k))],
        title=title
        or "style transfer: a test digit (left), its z = mean of q(z|x,y) decoded with each y",
    )


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    return _save(fig, path)


def save_gif(
    path: str | os.PathLike, figures: Sequence[plt.Figure], seconds_per_frame: float = 0.4
) -> Path:
    """Assemble figures (closed afterwards) into an animated GIF, one frame each, looping;
    the last frame is held three times as long."""
    from PIL import Image

    frames = []
    for fig in figures:
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
        plt.close(fig)
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size) for f in frames]
    durations = [int(1000 * seconds_per_frame)] * len(frames)
    durations[-1] *= 3
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path


def save_curves(
    path: str | os.PathLike, history: Sequence[dict[str, float]], elbo: str = "ELBO"
) -> Path:
    """Train, validation and test ``elbo`` (nats per datum; "pseudo-ELBO" for a
    pseudo-likelihood) against epoch (those measured)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_elbo", "train"), ("val_elbo", "validation"), ("test_elbo", "test")):
        values = [row.get(key, math.nan) for row in history]
        if any(math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{elbo} (nats per datum)")
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
