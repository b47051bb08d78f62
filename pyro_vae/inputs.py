"""The one check of the data rows a model or a guide is given, before any network runs."""

from __future__ import annotations

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
