"""Your own images: a folder of image files (``folder:PATH``) or NumPy arrays (``array:PATH``)."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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


VALIDATION_NAMES = ("val", "valid", "validation", "eval", "dev")


def split_folders(folder: Path) -> list[Path]:
    """The split folders of an image folder: ``[train, test]`` where both are there,
    ``[train]`` where ``train/`` is there alone (a seeded split of it follows), else
    ``[folder]`` (``train/`` or ``test/`` beside class folders is a class of that name).
    ``test/`` alone, or ``train/`` beside ``val/`` without ``test/``, is refused."""
    try:
        return _split_folders(folder)
    except OSError as e:
        raise imagefiles.unreadable(Path(e.filename or folder), e) from None


def _split_folders(folder: Path) -> list[Path]:
    train, test = folder / "train", folder / "test"
    if train.is_dir() and test.is_dir():
        return [train, test]
    if not (train.is_dir() or test.is_dir()):
        return [folder]
    others = sorted(
        p.name
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and p.name not in ("train", "test")
        and (p.is_dir() or imagefiles.is_image(p))
    )
    if train.is_dir():
        valid = [name for name in others if name.lower() in VALIDATION_NAMES]
        if valid:
            raise DataError(
                f"{folder} holds train/ and {valid[0]}/ but no test/: rename {valid[0]}/ to "
                "test/, or move it away to hold out a seeded 10% of train/"
            )
        return [folder] if others else [train]
    if others:
        return [folder]
    raise DataError(
        f"{folder} holds test/ but no train/: put the training images in train/ (with the same "
        "class folders), or the images of test/ up into the folder itself"
    )


def load_folder(path: str | os.PathLike, image_size: int | None = None, seed: int = 0) -> Dataset:
    """A folder of PNG/JPEG images (``--dataset folder:PATH``): class subfolders become labels
    (a flat folder has none); ``train/`` and ``test/`` subfolders are used when present (only
    ``train/``: a seeded split of it), else a seeded 10% is held out for testing (balanced
    over the classes). With ``image_size``, each image is centre-cropped to a square and
    resized to S x S. Symbolic links are followed, each file once (no image is both trained
    and tested on). Decoded once, then read from the cache
    (:func:`pyro_vae.data.cache.cache_dir`)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder: give --dataset folder:PATH with a folder of images"
        )
    name, source = f"folder:{path}", str(folder)
    splits = split_folders(folder)
    taken: dict[imagefiles.FileId, Path] = {}  # the files of the splits listed so far
    listings = [imagefiles.list_split(s, taken) for s in splits]
    decoded = [
        imagefiles.load_split(s, image_size, listing=listing)
        for s, listing in zip(splits, listings, strict=True)
    ]
    if len(decoded) == 2:
        return _from_decoded(name, source, dict(zip(("train", "test"), decoded, strict=True)))
    whole = decoded[0]
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
NAMES_FIX = (
    "name the arrays x_train/x_test (y_train/y_test), train/test, or images (labels) to hold "
    "out a seeded 10%"
)


def _pickled(file: Path, key: str | None) -> DataError:
    what = f"array {key!r}" if key else "array"
    return DataError(
        f"{file}: its {what} holds Python objects (a pickled object array), which are not "
        "loaded (unpickling can run code): save numeric arrays, e.g. "
        "np.savez(path, images=np.asarray(images, dtype=np.uint8))"
    )


def read_arrays(file: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` by name, or a ``.npy``'s as ``images`` (never unpickling)."""
    try:
        loaded = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{file} not found: check the path") from None
    except PermissionError as e:
        raise imagefiles.unreadable(file, e) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if "Object arrays" in str(e):
            raise _pickled(file, None) from None
        if file.is_dir():
            raise DataError(f"{file} is a folder: give a .npy or .npz file") from None
        raise DataError(
            f"{file} could not be read as a .npy/.npz file ({e}): it is damaged (truncated?) or "
            "no NumPy file: save it again with np.save or np.savez"
        ) from None
    if isinstance(loaded, np.ndarray):
        return {"images": loaded}
    with loaded:
        arrays = {}
        for k in loaded.files:
            try:
                arrays[k] = loaded[k]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                if "Object arrays" in str(e):
                    raise _pickled(file, k) from None
                raise DataError(
                    f"{file}: its array {k!r} could not be read ({e}): the file is damaged "
                    "(truncated?): save it again with np.savez"
                ) from None
        return arrays


def as_data(array: np.ndarray, where: str) -> Tensor:
    """An array of images as uint8 (N, C, H, W) (see
    :func:`~pyro_vae.data.imagefiles.as_uint8_images`), or a 2-D float array (N, D) as
    tabular rows: float32, kept as they are, stored as (N, 1, 1, D)."""
    a = np.asarray(array)
    if a.ndim == 2 and a.dtype.kind == "f":
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise DataError(f"{where}: the array of shape {a.shape} holds no data: give some")
        if not np.isfinite(a).all():
            raise DataError(f"{where}: the rows hold NaN or inf values: drop or repair them")
        rows = np.ascontiguousarray(a, dtype=np.float32)
        return torch.from_numpy(rows).reshape(len(rows), 1, 1, -1)
    return torch.from_numpy(imagefiles.as_uint8_images(a, where))


def _images_key(arrays: dict[str, np.ndarray], where: str) -> tuple[str, str | None]:
    """The names of the images and labels of a file without train/test splits."""
    for x_key, y_key in (("images", "labels"), ("x", "y")):
        if x_key in arrays:
            return x_key, y_key if y_key in arrays else None
    for x_key, y_key in (("images", "labels"), ("x", "y")):
        if y_key in arrays:
            raise DataError(f"{where} holds {y_key!r} but no {x_key!r} (the images): {NAMES_FIX}")
    if len(arrays) == 1:
        return next(iter(arrays)), None  # one array, whatever its name: the images
    raise DataError(f"{where} holds arrays {sorted(arrays)}: {NAMES_FIX}")


def load_array(path: str | os.PathLike, seed: int = 0) -> Dataset:
    """Images in a NumPy file (``--dataset array:PATH``): a ``.npy`` array of images, or an
    ``.npz`` with ``x_train``/``x_test`` (and ``y_train``/``y_test``), ``train``/``test``, or
    ``images`` (and ``labels``), or a single array of any name; without a test split a seeded
    10% is held out. Images are (N, H, W), (N, H, W, C) or (N, C, H, W), uint8, bool (0/255) or
    floats in [0, 1]; a 2-D float array (N, D) is tabular rows of real values (train them with
    ``--likelihood normal``). Half a pair of images (``x_train`` without ``x_test``) is refused,
    naming what is missing."""
    file = Path(path).expanduser().resolve()
    arrays = read_arrays(file)
    where = str(file)
    for x_tr, x_te, y_tr, y_te in ARRAY_KEYS:
        for have, missing, what in ((x_tr, x_te, "test images"), (x_te, x_tr, "training images")):
            if have in arrays and missing not in arrays:
                raise DataError(
                    f"{where} holds {have!r} but no {missing!r} (the {what}): add it, or save "
                    "all the images as 'images' (and 'labels') to hold out a seeded 10%"
                )
        if x_tr not in arrays:
            continue
        train = as_data(arrays[x_tr], f"{where}[{x_tr}]")
        test = as_data(arrays[x_te], f"{where}[{x_te}]")
        if train.shape[1:] != test.shape[1:]:
            raise DataError(
                f"{where}: {x_tr} holds images of {tuple(train.shape[1:])} and {x_te} of "
                f"{tuple(test.shape[1:])} (C, H, W): give both splits the same shape"
            )
        labels = [
            torch.from_numpy(imagefiles.as_labels(arrays[k], len(x), f"{where}[{k}]"))
            if k in arrays
            else None
            for k, x in ((y_tr, train), (y_te, test))
        ]
        return labelled(f"array:{path}", where, train, test, *labels)
    key, label_key = _images_key(arrays, where)
    images = as_data(arrays[key], f"{where}[{key}]" if len(arrays) > 1 else where)
    labels = None
    if label_key is not None:
        labels = torch.from_numpy(
            imagefiles.as_labels(arrays[label_key], len(images), f"{where}[{label_key}]")
        )
    tr, te = split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    return labelled(
        f"array:{path}", where, images[tr], images[te], pick(labels, tr), pick(labels, te)
    )


SOURCES.register("folder", load_folder, "a folder of images (class subfolders: labels)")
SOURCES.register("array", load_array, "a .npy / .npz file of images (and labels)")


@dataclass(frozen=True)
class Inputs:
    """Images given to a trained model (``pyro-vae encode --input``...): uint8 (N, C, H, W),
    class labels where the source has them, and a name per image (its file, or its row)."""

    images: Tensor
    labels: Tensor | None
    names: tuple[str, ...]


def read_inputs(
    specs: Sequence[str], image_shape: Sequence[int], image_size: int | None = None
) -> Inputs:
    """Every image that ``specs`` name, prepared as a run's data were: ``folder:PATH`` (every
    image in it, whatever split; class subfolders give labels), ``array:PATH`` (a ``.npy``, or
    an ``.npz``'s images: ``images``/``x``, else its train and test splits, with their
    labels), or image files; cropped and resized to the run's ``image_size`` where it had one,
    and brought to the run's channels (grey <-> colour). Images of another size than the
    run's are refused in one line."""
    c, h, w = (int(s) for s in image_shape)
    parts: list[Inputs] = []
    files = []
    for spec in specs:
        scheme, colon, path = spec.partition(":")
        if colon and scheme == "folder":
            parts.append(_folder_inputs(Path(path).expanduser(), image_size))
        elif colon and scheme == "array":
            parts.append(_array_inputs(Path(path).expanduser()))
        else:
            file = Path(spec).expanduser()
            if not imagefiles.is_image(file):
                raise DataError(
                    f"{spec} is not an image file: give image files, folder:PATH or array:PATH"
                )
            files.append(file)
    if files:
        decoded = imagefiles.decode(files, image_size, 1.0)
        parts.append(Inputs(torch.from_numpy(decoded), None, tuple(str(f) for f in files)))
    if not parts:
        raise DataError("no inputs: give image files, folder:PATH or array:PATH")
    images = [_channels(p.images, c) for p in parts]
    for p, x in zip(parts, images, strict=True):
        if tuple(x.shape[2:]) != (h, w):
            raise DataError(
                f"{p.names[0]}: images of {tuple(x.shape[2:])} pixels, the run reads {(h, w)}: "
                "give images of the run's size"
            )
    labels = None
    if all(p.labels is not None for p in parts):
        labels = torch.cat([p.labels for p in parts])  # type: ignore[misc]
    names = tuple(n for p in parts for n in p.names)
    return Inputs(torch.cat(images), labels, names)


def _channels(x: Tensor, c: int) -> Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1).contiguous()
    if c == 1 and x.shape[1] == 3:  # ITU-R 601 luma, as PIL's convert("L")
        weights = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
        return (x.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(f"images with {x.shape[1]} channels cannot become {c}")


def _folder_inputs(folder: Path, image_size: int | None) -> Inputs:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give folder:PATH with a folder of images")
    splits = split_folders(folder)
    taken: dict[imagefiles.FileId, Path] = {}
    listings = [imagefiles.list_split(s, taken) for s in splits]
    parts = [
        imagefiles.load_split(s, image_size, listing=listing)
        for s, listing in zip(splits, listings, strict=True)
    ]
    names = tuple(str(s / f) for s, p in zip(splits, parts, strict=True) for f in p.files)
    images = torch.cat([torch.from_numpy(np.array(p.images)) for p in parts])
    labels = None
    if all(p.labels is not None for p in parts):
        labels = torch.cat([torch.from_numpy(np.array(p.labels)) for p in parts])
    return Inputs(images, labels, names)


def _array_inputs(file: Path) -> Inputs:
    arrays = read_arrays(file.resolve())
    for x_key, y_key in (("images", "labels"), ("x", "y")):
        if x_key in arrays:
            groups = [(x_key, y_key)]
            break
    else:
        splits = (("x_train", "y_train"), ("x_test", "y_test"), ("train", None), ("test", None))
        groups = [(x, y) for x, y in splits if x in arrays]
    if not groups and len(arrays) == 1:
        groups = [(next(iter(arrays)), None)]  # one array, whatever its name: the images
    if not groups:
        raise DataError(
            f"{file} holds arrays {sorted(arrays)}: name the images images (labels), x (y), or "
            "x_train/x_test (y_train/y_test)"
        )
    images, labels, names = [], [], []
    for x_key, y_key in groups:
        where = f"{file}[{x_key}]"
        x = as_data(arrays[x_key], where)
        if images and x.shape[1:] != images[0].shape[1:]:
            raise DataError(
                f"{where}: images of {tuple(x.shape[1:])}, those of {groups[0][0]} are "
                f"{tuple(images[0].shape[1:])} (C, H, W): give images of one shape"
            )
        images.append(x)
        names += [f"{where}[{i}]" for i in range(len(x))]
        if y_key is not None and y_key in arrays:
            labels.append(
                torch.from_numpy(imagefiles.as_labels(arrays[y_key], len(x), f"{file}[{y_key}]"))
            )
    all_labels = torch.cat(labels) if len(labels) == len(images) else None
    return Inputs(torch.cat(images), all_labels, tuple(names))
