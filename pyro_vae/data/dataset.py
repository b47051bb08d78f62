"""The data container: train/test images as whole tensors, subsets and seeded splits.

A :class:`Dataset` keeps each split as it is stored, **uint8 images (N, C, H, W)** with values
0..255 (binarized data as 0 and 255), a quarter of float32's memory;
:func:`pyro_vae.inputs.as_input` turns a batch into what models read, float rows (n, C*H*W) in
[0, 1]. (A float tensor (N, ...) in [0, 1] is accepted too, as data a user made in Python.)
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .. import checkpoint
from ..inputs import as_input, chw
from ..registry import one_of
from .cache import stream
from .imagefiles import DataError, check_image_size


@dataclass(frozen=True)
class Dataset:
    """Train/test images, uint8 (N, C, H, W) in 0..255 (or float (N, ...) in [0, 1]), plus
    class labels and named binary attributes (CelebA's) where known.

    ``image_shape`` is (C, H, W); an (H, W) given is read as one grey channel. Turn a batch
    into the model's input with :func:`as_input`.
    """

    name: str
    train: Tensor
    test: Tensor
    image_shape: tuple[int, ...]
    source: str
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    valid: Tensor | None = None
    attribute_names: tuple[str, ...] = ()
    train_attributes: Tensor | None = None  # (N, len(attribute_names)) bool
    test_attributes: Tensor | None = None
    class_names: tuple[str, ...] = ()
    factor_names: tuple[str, ...] = ()  # ground-truth generative factors (dSprites)
    train_factors: Tensor | None = None  # (N, len(factor_names)) int64 indices
    test_factors: Tensor | None = None

    def __post_init__(self) -> None:
        shape = chw(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        for split, t in (("train", self.train), ("test", self.test)):
            if math.prod(t.shape[1:]) != math.prod(shape):
                raise DataError(
                    f"{self.name}: {split} data of shape {tuple(t.shape)} do not hold images "
                    f"of shape {shape}"
                )

    @property
    def x_dim(self) -> int:
        return math.prod(self.image_shape)

    @property
    def is_binary(self) -> bool:
        top = 255 if self.train.dtype == torch.uint8 else 1
        return bool(((self.train == 0) | (self.train == top)).all())

    @property
    def is_8bit(self) -> bool:
        """Grey or colour levels 0..255 (not binarized): scored in bits per dimension too."""
        return self.train.dtype == torch.uint8 and not self.is_binary

    def to(self, device: torch.device | str, budget: float | None = None) -> Dataset:
        """The data set on ``device``; with ``budget`` (bytes), a training set larger than it
        stays off the device, in a memory-mapped file (:func:`stream`), and batches are
        copied to the device one at a time."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        big = budget is not None and self.train.nbytes > budget
        if big:
            print(
                f"{self.name}: the training images ({self.train.nbytes / 2**30:.2f} GiB) exceed "
                f"the data memory budget ({budget / 2**30:.2f} GiB): batches stream from a "
                "memory-mapped file",
                file=sys.stderr,
            )
        return replace(
            self,
            train=stream(self.train) if big else move(self.train),
            test=move(self.test),
            train_labels=move(self.train_labels),
            test_labels=move(self.test_labels),
            valid=move(self.valid),
            train_attributes=move(self.train_attributes),
            test_attributes=move(self.test_attributes),
            train_factors=move(self.train_factors),
            test_factors=move(self.test_factors),
        )

    def fingerprint(self) -> str:
        """A short digest of the data: every test image and label, the training set's shape
        and up to 1,000 of its images evenly spread (so that resuming or evaluating a run on
        other data than it was trained on is noticed)."""
        h = hashlib.sha256()
        step = max(1, -(-len(self.train) // 1000))
        for part in (self.test, self.test_labels, self.train[::step], self.train_labels):
            if part is not None:
                checkpoint.digest_tensor(h, part)
        h.update(f"{tuple(self.train.shape)}".encode())
        return h.hexdigest()[:16]

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> Dataset:
        """``n_train`` training and ``n_test`` test data (for quick runs), drawn with ``seed``:
        as equal a share of each class as the labels allow, else at random; in the data's
        order. ``None`` keeps a split whole."""

        def pick(n: int | None, x: Tensor, labels: Tensor | None, offset: int) -> Tensor | None:
            if n is None or n >= len(x):
                return None
            return spread_subset(labels, len(x), n, seed + offset)

        require_data(self)  # the one step every run takes, data loaded or given as an object
        keep_train = pick(n_train, self.train, self.train_labels, 0)
        keep_test = pick(n_test, self.test, self.test_labels, 1)
        take = lambda t, idx: t if t is None or idx is None else t[idx.to(t.device)]  # noqa: E731
        return replace(
            self,
            train=take(self.train, keep_train),
            test=take(self.test, keep_test),
            train_labels=take(self.train_labels, keep_train),
            test_labels=take(self.test_labels, keep_test),
            train_attributes=take(self.train_attributes, keep_train),
            test_attributes=take(self.test_attributes, keep_test),
            train_factors=take(self.train_factors, keep_train),
            test_factors=take(self.test_factors, keep_test),
        )


def require_data(dataset: Dataset) -> Dataset:
    """``dataset`` unchanged if its training and test splits hold data; else a DataError naming
    the empty split and the source (an empty training split would otherwise pass for binary
    data, and its grey test images fail later in the likelihood)."""
    if not isinstance(dataset, Dataset):
        raise DataError(
            f"the data set's loader returned {type(dataset).__name__}, not a "
            "pyro_vae.data.Dataset: return Dataset(name, train, test, image_shape, source)"
        )
    for split, t in (("training", dataset.train), ("test", dataset.test)):
        if len(t) == 0:
            raise DataError(
                f"{dataset.name} has no {split} images (from {dataset.source}): check that its "
                f"files hold the {split} split, or give another data set"
            )
    return dataset


def spread_subset(labels: Tensor | None, size: int, n: int, seed: int) -> Tensor:
    """Sorted indices of ``n`` of ``size`` data, chosen with ``seed``: with labels, class by
    class in turn (so every class gets ``n // classes`` or one more, where it has them)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(size, generator=gen)
    if labels is None:
        return perm[:n].sort().values
    labels = labels.cpu()[perm]
    # rank of each datum within its class (in the shuffled order), then take by rank
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty(size, dtype=torch.long)
    rank[order] = torch.arange(size) - starts
    chosen = torch.argsort(rank * size + torch.arange(size), stable=True)[:n]
    return perm[chosen].sort().values


TEST_FRACTION = 0.1  # held out, with a seed, where a folder or array has no test split


def split(
    images: Tensor, labels: Tensor | None, seed: int = 0, fraction: float = TEST_FRACTION
) -> tuple[Tensor, Tensor]:
    """Indices (train, test) of a seeded split: ``fraction`` of the data (at least one) for
    testing, balanced over the classes where labels are given."""
    n = len(images)
    if n < 2:
        raise DataError(f"{n} image(s) cannot be split into train and test: give at least 2")
    n_test = min(n - 1, max(1, round(n * fraction)))
    test = spread_subset(labels, n, n_test, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[test] = False
    return keep.nonzero().squeeze(1), test


def validation_split(dataset: Dataset, size: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(``dataset`` without its validation data, the validation data): ``size`` training data
    (a count N >= 1, or a fraction in (0, 1) of them, at least one) chosen with ``seed`` as
    :func:`spread_subset` chooses (balanced over the classes where labelled), taken out of the
    training split. The validation data set holds them as both its train and its test split
    (with their labels, attributes and factors), so that it is binarized and viewed as a test
    set is."""
    n = len(dataset.train)
    n_val = int(size) if size >= 1 else max(1, round(n * size))
    if n_val >= n:
        raise ValueError(
            f"--val-size {size:g} takes {n_val} of the {n} training data and leaves none to "
            "train on: give fewer (a count below it, or a fraction)"
        )
    held = spread_subset(dataset.train_labels, n, n_val, seed + 2)  # subset uses +0, +1
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    rest = keep.nonzero().squeeze(1)
    take = lambda t, idx: None if t is None else t[idx.to(t.device)]  # noqa: E731
    val = {
        part: take(getattr(dataset, f"train_{part}"), held)
        for part in ("labels", "attributes", "factors")
    }
    x = take(dataset.train, held)
    validation = replace(
        dataset,
        train=x,
        test=x,
        valid=None,
        **{f"{split}_{part}": t for part, t in val.items() for split in ("train", "test")},
    )
    trained = replace(
        dataset,
        train=take(dataset.train, rest),
        **{
            f"train_{part}": take(getattr(dataset, f"train_{part}"), rest)
            for part in ("labels", "attributes", "factors")
        },
    )
    return trained, validation


def labelled(
    name: str,
    source: str,
    train: Tensor,
    test: Tensor,
    train_labels: Tensor | None,
    test_labels: Tensor | None,
    **extra: object,
) -> Dataset:
    return Dataset(
        name=name,
        train=train,
        test=test,
        image_shape=tuple(train.shape[1:]),
        source=source,
        train_labels=train_labels,
        test_labels=test_labels,
        **extra,  # type: ignore[arg-type]
    )


def to_images(images: np.ndarray) -> Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) as a uint8 tensor (N, C, H, W)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"expected uint8 images (N, H, W[, C]), got {images.dtype} {images.shape}")
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images)
    return torch.from_numpy(images if images.flags.writeable else images.copy())


def attribute(dataset: Dataset, name: str, split: str = "test") -> Tensor:
    """The bool column of a named attribute (CelebA's ``Blond_Hair``...) for a split."""
    if not dataset.attribute_names:
        raise ValueError(f"{dataset.name} has no attributes: use --dataset celeba")
    if name not in dataset.attribute_names:
        one_of(name, dataset.attribute_names, "attribute")
    table = dataset.test_attributes if split == "test" else dataset.train_attributes
    return table[:, dataset.attribute_names.index(name)]  # type: ignore[index]


def resize(dataset: Dataset, size: int) -> Dataset:
    """Every image centre-cropped to a square and resized to size x size (antialiased)."""
    c, h, w = dataset.image_shape
    if (h, w) == (size, size):
        return dataset
    count = sum(len(x) for x in (dataset.train, dataset.test, dataset.valid) if x is not None)
    batch = min(1024, len(dataset.train)) * c * size * size * 4 * 3  # float work per batch
    check_image_size(count, c, size, dataset.name, extra=batch)

    def go(x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        out = []
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        for xb in x.reshape(-1, c, h, w).split(1024):
            xb = as_input(xb).reshape(-1, c, h, w)[:, :, top : top + side, left : left + side]
            xb = torch.nn.functional.interpolate(
                xb, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            out.append(xb)
        y = torch.cat(out).clamp(0, 1)
        return y.mul(255).round().to(torch.uint8) if x.dtype == torch.uint8 else y

    return replace(
        dataset,
        train=go(dataset.train),
        test=go(dataset.test),
        valid=go(dataset.valid),
        image_shape=(c, size, size),
    )


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices (N,) -> float one-hot rows (N, num_classes)."""
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(
            f"labels must be a 1-D integer tensor; got {labels.dtype} {tuple(labels.shape)}"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}; got {int(labels.min())}..{int(labels.max())}"
        )
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def balanced_subset(labels: Tensor, n: int, seed: int) -> Tensor:
    """Indices of ``n`` data, ``n / num_classes`` from each class, chosen at random with
    ``seed`` (its own generator: the choice does not depend on the training RNG)."""
    classes = labels.unique()
    if n % len(classes):
        raise ValueError(
            f"{n} labels cannot be balanced over {len(classes)} classes: use a multiple of "
            f"{len(classes)}"
        )
    per_class = n // len(classes)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes.tolist():
        members = (labels.cpu() == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} data, fewer than {per_class} requested")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values.to(labels.device)
