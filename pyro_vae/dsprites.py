"""dSprites-style data: every combination of five generative factors, one 64 x 64 binary image
each, rendered here (Matthey, Higgins, Hassabis & Lerchner 2017, "dSprites: disentanglement
testing sprites dataset").

DeepMind's file cannot be downloaded on every machine, but the data set is procedural: 3
shapes (square, ellipse, heart) x 6 scales (0.5 to 1) x 40 orientations (0 to 2π, both ends
included, as in the original) x 32 x-positions x 32 y-positions (0 to 1), 737,280 images in
that order (the last factor fastest). **This is a re-rendering, not DeepMind's file**: the
shapes' outlines, their size in pixels and the positions' pixel range are this module's (a
shape of scale 1 spans about 16-20 pixels; positions move the centre over pixels 16 to 47 in
steps of one, so translating is exact), so images and numbers are close to, not equal to,
those on the original. When a user has DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64
.npz`` in the data folder it is loaded instead (the colour factor, constant, dropped).

The factors are kept as integer indices into :data:`FACTORS` (``Dataset.train_factors``);
``factor_values`` turns them into values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

SIZE = 64
RADIUS = 10.0  # pixels: the half-extent of a shape of scale 1 before rotation
FIRST_CENTRE = 16  # pixel of the centre at position 0 (position 1: FIRST_CENTRE + 31)
SHAPES = ("square", "ellipse", "heart")
FACTORS: dict[str, Tensor] = {
    "shape": torch.arange(1.0, 4.0, dtype=torch.float64),  # 1 square, 2 ellipse, 3 heart
    "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
    "orientation": torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
    "position_x": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
    "position_y": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
}
FACTOR_NAMES = tuple(FACTORS)
SIZES = tuple(len(v) for v in FACTORS.values())  # (3, 6, 40, 32, 32)
N_IMAGES = math.prod(SIZES)  # 737,280
DEEPMIND_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def inside(shape: int, u: Tensor, v: Tensor) -> Tensor:
    """Whether the points (u, v) (shape coordinates: unit half-extent, v upwards) lie inside
    shape ``shape`` (0 square, 1 ellipse, 2 heart)."""
    if shape == 0:
        return (u.abs() <= 1) & (v.abs() <= 1)
    if shape == 1:
        return u**2 + (v / 0.5) ** 2 <= 1
    if shape == 2:  # the classic heart curve (x² + y² - 1)³ - x² y³ <= 0, centred
        x, y = u * 1.15, v * 1.15 + 0.1
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    raise ValueError(f"shape index must be 0, 1 or 2; got {shape}")


def render(shape: int, scale: float, angle: float, px: float = 0.0, py: float = 0.0) -> Tensor:
    """One image, bool (64, 64): ``shape`` at ``scale``, rotated by ``angle`` (radians,
    counter-clockwise), centred at positions (px, py) in [0, 1]."""
    # grid positions are whole-pixel moves (rounding takes float error off them); pixel
    # centres sit at +0.5, so no centre lies exactly on an edge of a grid-scaled square
    cx = FIRST_CENTRE + round(px * (SIZES[3] - 1), 6)
    cy = FIRST_CENTRE + round(py * (SIZES[4] - 1), 6)
    rows, cols = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float64) + 0.5,
        torch.arange(SIZE, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    dx, dy = cols - cx, -(rows - cy)  # y upwards
    c, s = math.cos(angle), math.sin(angle)
    u = (c * dx + s * dy) / (RADIUS * scale)  # rotate the points by -angle
    v = (-s * dx + c * dy) / (RADIUS * scale)
    return inside(shape, u, v)


@functools.cache
def _bases() -> np.ndarray:
    """Every (shape, scale, orientation) drawn at position (0, 0): uint8 (3, 6, 40, 64, 64)."""
    base = np.zeros((*SIZES[:3], SIZE, SIZE), dtype=np.uint8)
    for shape in range(SIZES[0]):
        for i, scale in enumerate(FACTORS["scale"].tolist()):
            for j, angle in enumerate(FACTORS["orientation"].tolist()):
                base[shape, i, j] = render(shape, scale, angle).numpy().astype(np.uint8) * 255
    return base


def images_for(index: Tensor | np.ndarray) -> np.ndarray:
    """The images of factor-index rows (n, 5): uint8 (n, 1, 64, 64) as 0/255. A position
    moves the shape drawn at position (0, 0) by whole pixels, so this equals :func:`render`
    at the grid's values (tested) and costs a copy per image."""
    rows = np.asarray(index, dtype=np.int64).reshape(-1, len(SIZES))
    base = _bases()
    out = np.zeros((len(rows), 1, SIZE, SIZE), dtype=np.uint8)
    for k, (shape, scale, angle, x, y) in enumerate(rows.tolist()):
        out[k, 0, y:, x:] = base[shape, scale, angle, : SIZE - y, : SIZE - x]
    return out


def generate() -> tuple[np.ndarray, np.ndarray]:
    """All 737,280 images, uint8 (N, 1, 64, 64) as 0/255, and their factor indices, int64
    (N, 5), in the factor grid's order (y-position fastest). About 3 GB; seconds."""
    index = np.stack(np.unravel_index(np.arange(N_IMAGES), SIZES), axis=1).astype(np.int64)
    return images_for(index), index


def sample_factors(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` factor-index rows drawn uniformly from the grid, (n, 5)."""
    return torch.stack([torch.randint(0, k, (n,), generator=generator) for k in SIZES], dim=1)


def factor_values(index: Tensor) -> Tensor:
    """Factor indices (..., 5) -> their values (float, shape as a number 1-3)."""
    return torch.stack(
        [FACTORS[name][index[..., k].long()] for k, name in enumerate(FACTOR_NAMES)], dim=-1
    )


def image_index(factors: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """Row of each factor-index combination (..., 5) in the data set's order."""
    f = torch.as_tensor(factors, dtype=torch.long)
    strides = torch.tensor([math.prod(SIZES[k + 1 :]) for k in range(len(SIZES))])
    return (f * strides).sum(-1)


__all__ = [
    "FACTORS",
    "FACTOR_NAMES",
    "N_IMAGES",
    "SHAPES",
    "SIZES",
    "factor_values",
    "generate",
    "image_index",
    "images_for",
    "inside",
    "render",
    "sample_factors",
]
