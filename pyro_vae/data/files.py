"""Your own images: a folder of image files (``folder:PATH``) or NumPy arrays (``array:PATH``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import imagefiles
from .dataset import Dataset, labelled, split
from .imagefiles import DataError
from .sources import SOURCES


def _from_decoded(name: str, source: str, splits: dict[str, imagefiles.Decoded]) -> Dataset:
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{source}: train images are {train.images.shape[1:]} and test images "
            f"{test.images.shape[1:]} (C, H, W): pass --image-size S to bring both to S x S"
        )
    if (train.labels is None) != (test.labels is None) or train.class_names != test.class_names:
        raise DataError(
            f"{source}: train/ and test/ must both have the same class folders, or neither "
            f"(train: {list(train.class_names)[:5]}, test: {list(test.class_names)[:5]})"
        )
    label = lambda d: None if d.labels is None else torch.from_numpy(np.array(d.labels))  # noqa: E731
    return labelled(
        name,
        source,
        torch.from_numpy(np.array(train.images)),
        torch.from_numpy(np.array(test.images)),
        label(train),
        label(test),
        class_names=train.class_names,
    )


def load_folder(path: str | os.PathLike, image_size: int | None = None, seed: int = 0) -> Dataset:
    """A folder of PNG/JPEG images (``--dataset folder:PATH``): class subfolders become labels
    (a flat folder has none); ``train/`` and ``test/`` subfolders are used when present, else
    a seeded 10% is held out for testing (balanced over the classes). With ``image_size``,
    each image is centre-cropped to a square and resized to S x S. Decoded once, then read
    from the cache (:func:`pyro_vae.imagefiles.cache_dir`)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder: give --dataset folder:PATH with a folder of images"
        )
    name, source = f"folder:{path}", str(folder)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        splits = {s: imagefiles.load_split(folder / s, image_size) for s in ("train", "test")}
        return _from_decoded(name, source, splits)
    whole = imagefiles.load_split(folder, image_size)
    images = torch.from_numpy(np.array(whole.images))
    labels = None if whole.labels is None else torch.from_numpy(np.array(whole.labels))
    tr, te = split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    return labelled(
        name,
        source,
        images[tr],
        images[te],
        pick(labels, tr),
        pick(labels, te),
        class_names=whole.class_names,
    )


ARRAY_KEYS = (("x_train", "x_test", "y_train", "y_test"), ("train", "test", None, None))


def load_array(path: str | os.PathLike, seed: int = 0) -> Dataset:
    """Images in a NumPy file (``--dataset array:PATH``): a ``.npy`` array of images, or an
    ``.npz`` with ``x_train``/``x_test`` (and ``y_train``/``y_test``), ``train``/``test``, or
    ``images`` (and ``labels``); without a test split a seeded 10% is held out. Images are
    (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or floats in [0, 1]."""
    file = Path(path).expanduser()
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"{file} could not be read as a .npy/.npz file ({e}): check the path"
        ) from None
    where = str(file)
    if isinstance(loaded, np.ndarray):
        arrays = {"images": loaded}
    else:
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    to_t = lambda a, w: torch.from_numpy(imagefiles.as_uint8_images(a, w))  # noqa: E731
    for x_tr, x_te, y_tr, y_te in ARRAY_KEYS:
        if x_tr in arrays and x_te in arrays:
            train, test = (
                to_t(arrays[x_tr], f"{where}[{x_tr}]"),
                to_t(arrays[x_te], f"{where}[{x_te}]"),
            )
            labels = [
                torch.from_numpy(imagefiles.as_labels(arrays[k], len(x), f"{where}[{k}]"))
                if k in arrays
                else None
                for k, x in ((y_tr, train), (y_te, test))
            ]
            return labelled(f"array:{path}", where, train, test, *labels)
    key = "images" if "images" in arrays else next(iter(arrays), None)
    if key is None or (len(arrays) > 2 and "images" not in arrays):
        raise DataError(
            f"{where} holds arrays {sorted(arrays)}: name them x_train/x_test (y_train/y_test), "
            "train/test, or images (labels)"
        )
    images = to_t(arrays[key], f"{where}[{key}]" if len(arrays) > 1 else where)
    labels = None
    if "labels" in arrays:
        labels = torch.from_numpy(
            imagefiles.as_labels(arrays["labels"], len(images), f"{where}[labels]")
        )
    tr, te = split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    return labelled(
        f"array:{path}", where, images[tr], images[te], pick(labels, tr), pick(labels, te)
    )


SOURCES.register("folder", load_folder, "a folder of images (class subfolders: labels)")
SOURCES.register("array", load_array, "a .npy / .npz file of images (and labels)")
