"""Binarization, batches and the semi-supervised schedule: what the training loop iterates.

Training slices batches from a per-epoch permutation on the device, with no per-sample loader.
This is the one data module that knows about torchrun ranks (:mod:`pyro_vae.distributed`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .. import distributed
from ..inputs import as_input
from ..registry import one_of
from .dataset import Dataset

BINARIZATIONS = ("dynamic", "fixed", "none")


def collect(data: object, what: str = "the training data") -> TrainingData:
    """Training data in the form the loop slices batches from: a tensor, a tuple of tensors
    with one row per datum (``(x, y)``) or a :class:`SemiSupervised` set, as they are; a NumPy
    array as a tensor; a ``torch.utils.data.Dataset`` (items: tensors or tuples of them), a
    ``DataLoader`` or any iterable of batches (tensors, or tuples ``(x,)`` / ``(x, y)`` as a
    ``TensorDataset`` gives them) read once and concatenated, so the epochs that follow are
    the loop's own fast permutations."""
    if isinstance(data, Tensor | SemiSupervised):
        return data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, tuple) and data and all(isinstance(t, Tensor) for t in data):
        return data if len(data) > 1 else data[0]
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, torch.utils.data.IterableDataset
    ):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            n = None
        if n is not None:
            return _joined([data[i] for i in range(n)], what, stack=True)
    if not isinstance(data, Iterable) or isinstance(data, str | bytes):
        raise ValueError(
            f"{what} must be a tensor, a NumPy array, a torch Dataset, a DataLoader or an "
            f"iterable of batches; got {type(data).__name__}"
        )
    return _joined(list(data), what, stack=False)


def _joined(items: list, what: str, stack: bool) -> Tensor | tuple[Tensor, ...]:
    """Items (or batches) that are tensors, arrays or tuples of them, joined along the data
    dimension: one tensor, or a tuple with one tensor per position."""
    if not items:
        raise ValueError(f"{what} are empty (no batches): give at least one datum")
    rows = [item if isinstance(item, tuple | list) else (item,) for item in items]
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        raise ValueError(f"{what}: every batch must have the same parts (x,) or (x, y)")
    parts = []
    for j in range(width):
        column = [torch.as_tensor(r[j]) for r in rows]
        try:
            parts.append(torch.stack(column) if stack else torch.cat(column))
        except RuntimeError as e:
            raise ValueError(f"{what}: part {j} of the batches do not fit together ({e})") from None
    return parts[0] if width == 1 else tuple(parts)


def binarize_once(x: Tensor, seed: int, chunk: int = 10000) -> Tensor:
    """One Bernoulli draw of grey levels with its own seeded generator (same result each call),
    stored as ``x`` is: uint8 0/255 for uint8 levels, float 0/1 for float ones."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    parts = [torch.bernoulli(as_input(xb), generator=gen) for xb in x.split(chunk)]
    out = torch.cat(parts).reshape(x.shape)
    return out.mul_(255).to(torch.uint8) if x.dtype == torch.uint8 else out


def prepare(data: Dataset, binarize: str, seed: int = 0) -> Dataset:
    """Apply a binarization scheme to a data set of grey levels.

    - ``dynamic``: training batches are re-drawn from the grey levels each time
      (see :func:`batches`); the test set is binarized once, with ``seed``.
    - ``fixed``: train and test binarized once, with ``seed``.
    - ``none``: grey levels (pair with a likelihood over [0, 1], e.g. ContinuousBernoulli).
    """
    one_of(binarize, BINARIZATIONS, "binarization")
    if binarize == "none" or data.is_binary:
        return data
    valid = None if data.valid is None else binarize_once(data.valid, seed + 2)
    test = binarize_once(data.test, seed + 1)
    train = binarize_once(data.train, seed) if binarize == "fixed" else data.train
    return replace(data, train=train, test=test, valid=valid)


def batches(
    x: TrainingData,
    batch_size: int,
    dynamic: bool = False,
    device: torch.device | str | None = None,
    permutation_seed: int | None = None,
) -> Iterator:
    """Batches of ``x`` from a fresh permutation, on ``device`` (default: where ``x`` is);
    with ``dynamic``, each batch is a new Bernoulli draw of its grey levels. The permutation
    comes from the global CPU torch RNG (saved in checkpoints), so data on the device and data
    streamed from a memory-mapped file give the same batches. In a distributed run every rank
    draws the permutation from ``permutation_seed`` and takes its shard of each global batch
    of ``batch_size`` x ranks data (:func:`pyro_vae.distributed.shard_rows`).

    ``x`` may be one tensor (batches are tensors), a tuple of tensors with one row per datum,
    such as ``(x, one_hot_labels)`` (batches are tuples, rows kept together, only the first
    binarized), or a :class:`SemiSupervised` set (it makes its own batches)."""
    if isinstance(x, SemiSupervised):
        yield from x.batches(batch_size, dynamic, device)
        return
    parts = x if isinstance(x, tuple) else (x,)
    device = parts[0].device if device is None else torch.device(device)
    if distributed.world().size > 1:
        # every rank draws the same permutation from the shared seed and takes its shard
        if permutation_seed is None:
            raise ValueError("a distributed run's batches need a permutation_seed")
        gen = torch.Generator().manual_seed(permutation_seed)
        index = distributed.shard_rows(torch.randperm(parts[0].shape[0], generator=gen), batch_size)
    else:
        index = iter(torch.randperm(parts[0].shape[0]).split(batch_size))
    for idx in index:
        rows = [p[idx.to(p.device)].to(device, non_blocking=True) for p in parts]
        first = as_input(rows[0])
        first = torch.bernoulli(first) if dynamic else first
        yield (first, *rows[1:]) if isinstance(x, tuple) else first


def num_data(x: TrainingData, batch_size: int | None = None) -> int:
    """How many data one epoch of :func:`batches` covers (over all ranks of a distributed
    run, which leave out a last global batch smaller than the number of ranks)."""
    if isinstance(x, SemiSupervised):
        return x.num_data
    n = (x[0] if isinstance(x, tuple) else x).shape[0]
    if batch_size is not None and distributed.world().size > 1:
        return distributed.num_sharded_data(n, batch_size)
    return n


def num_batches(x: TrainingData, batch_size: int) -> int:
    """Steps per epoch (of each rank, in a distributed run)."""
    if isinstance(x, SemiSupervised):
        return x.num_batches(batch_size)
    if distributed.world().size > 1:
        return distributed.num_sharded_batches(num_data(x), batch_size)
    return -(-num_data(x) // batch_size)


@dataclass(frozen=True)
class SemiSupervised:
    """Training data for semi-supervised learning: labelled pairs and unlabelled images.

    Each epoch visits every unlabelled datum once and every labelled one ``repeats`` times, in
    batches of one kind: unlabelled batches ``(x,)`` and labelled batches ``(x, y)`` (y
    one-hot), the labelled ones spread evenly through the epoch. ``repeats=1`` is the schedule
    of Pyro's ``ss_vae_M2`` example; more repeats give the classifier more supervised steps
    per epoch when labels are few."""

    labelled_x: Tensor
    labelled_y: Tensor
    unlabelled_x: Tensor
    repeats: int = 1

    @property
    def num_data(self) -> int:
        return self.repeats * self.labelled_x.shape[0] + self.unlabelled_x.shape[0]

    def num_batches(self, batch_size: int) -> int:
        n_sup, n_unsup = self.labelled_x.shape[0], self.unlabelled_x.shape[0]
        return self.repeats * -(-n_sup // batch_size) + -(-n_unsup // batch_size)

    def batches(
        self, batch_size: int, dynamic: bool = False, device: torch.device | str | None = None
    ) -> Iterator[tuple[Tensor, ...]]:
        labelled = (self.labelled_x, self.labelled_y)
        sup = itertools.chain.from_iterable(
            batches(labelled, batch_size, dynamic, device) for _ in range(self.repeats)
        )
        unsup = batches((self.unlabelled_x,), batch_size, dynamic, device)
        n_sup = self.repeats * -(-self.labelled_x.shape[0] // batch_size)
        n_unsup = -(-self.unlabelled_x.shape[0] // batch_size)
        # merge by position in the epoch: labelled batch j at (j + 1/2) / n_sup, and so on
        order = sorted(
            [((j + 0.5) / n_sup, 0) for j in range(n_sup)]
            + [((i + 0.5) / max(n_unsup, 1), 1) for i in range(n_unsup)]
        )
        for _, kind in order:
            yield next(sup) if kind == 0 else next(unsup)

    def to(self, device: torch.device | str) -> SemiSupervised:
        moved = (t.to(device) for t in (self.labelled_x, self.labelled_y, self.unlabelled_x))
        return SemiSupervised(*moved, repeats=self.repeats)


TrainingData = Tensor | tuple[Tensor, ...] | SemiSupervised
