"""What models read, below the data layer: image shapes, stored batches as float rows, and the
one check of the data rows a model or a guide is given, before any network runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.poutine.util import is_validation_enabled
from torch import Tensor


def check_rows(x: object, x_dim: int) -> int:
    """The number of data in ``x``, a float tensor (batch, ``x_dim``) of at least one row;
    with Pyro's validation on (outside the training loop's later steps), also finite."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != x_dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"x must be a float tensor of shape (batch, {x_dim}); got {shape} "
            "(flatten images with x.reshape(len(x), -1))"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a float tensor; got {x.dtype} (use x.float() / 255)")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (0 data): give at least one datum")
    if is_validation_enabled() and not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or inf values: drop or repair those data")
    return x.shape[0]


def chw(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) from an image shape: (H, W) is one grey channel."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"an image shape is (C, H, W) or (H, W), not {shape}")
    return shape  # type: ignore[return-value]


def as_input(x: Tensor) -> Tensor:
    """What models read: a batch of stored images (n, ...) as float rows (n, C*H*W) in [0, 1]
    (uint8 levels divided by 255)."""
    x = x.reshape(x.shape[0], -1)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
