"""CelebA's aligned faces in CelebA's own layout, with their 40 binary attributes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import imagefiles
from .dataset import Dataset, split
from .imagefiles import DataError, Decoded
from .sources import DATASETS, SOURCES, search

CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
# the usual crop of aligned CelebA: the central 148 x 148 of 178 x 218 (PyTorch-VAE, DCGAN code)
CELEBA_CROP = 148 / 178


def is_celeba(folder: Path) -> bool:
    return (folder / CELEBA_IMAGES).is_dir() and (folder / CELEBA_ATTRIBUTES).is_file()


def read_celeba_attributes(path: Path) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """CelebA's ``list_attr_celeba.txt``: a count line, the attribute names, then one line per
    image (file name and one -1/1 per attribute). Returns files, names, and a bool array."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} could not be read ({e}): replace it") from None
    if len(lines) < 2:
        raise DataError(f"{path} has {len(lines)} lines: expected a count, names, then rows")
    names = tuple(lines[1].split())
    files, rows = [], []
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise DataError(
                f"{path}, line {i}: expected a file name and {len(names)} values of -1 or 1; "
                f"got {len(parts)} fields: fix or replace the file"
            )
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    return files, names, np.asarray(rows, dtype=bool).reshape(len(rows), len(names))


def read_celeba_partition(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("0", "1", "2"):
            out[parts[0]] = int(parts[1])
    return out


def read_celeba(
    folder: Path, size: int, cache: bool = True
) -> tuple[Decoded, np.ndarray, tuple[str, ...]]:
    """CelebA in its own layout: the images the attribute file lists, in its order, the
    central crop (:data:`CELEBA_CROP` of the width) resized to size x size. Returns the
    decoded images, the attributes (N, 40) bool and their names."""
    files, names, attributes = read_celeba_attributes(folder / CELEBA_ATTRIBUTES)
    paths = [folder / CELEBA_IMAGES / f for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{folder / CELEBA_ATTRIBUTES} lists {len(missing)} images missing from "
            f"{folder / CELEBA_IMAGES} (first: {missing[0].name}): restore them, or cut their "
            "rows from the attribute file"
        )

    def make() -> dict[str, np.ndarray]:
        return {"images": imagefiles.decode(paths, size, CELEBA_CROP, progress=str(folder))}

    if cache:
        key = imagefiles.fingerprint(
            folder, paths, size=size, crop=CELEBA_CROP, attributes=len(files)
        )
        arrays = imagefiles.cached(key, make, "celeba")
    else:
        arrays = make()
    return Decoded(arrays["images"], None, (), tuple(files)), attributes, names


CELEBA_SIZE = 64
CELEBA_TEST = 1000  # held out where list_eval_partition.txt is absent


def load_celeba(
    data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> Dataset:
    """CelebA's aligned faces in CelebA's own layout (``img_align_celeba/`` and
    ``list_attr_celeba.txt``; ``list_eval_partition.txt`` when present, else a seeded split
    holding out 1,000), the central crop resized to ``image_size`` (64) squared; the 40
    attributes become named binary labels (``attribute_names``, ``*_attributes``). Looked for
    in ``data_dir`` (or ``$PYRO_VAE_DATA``) and its ``celeba/``; ``--dataset celeba:PATH``
    names the folder."""
    found, looked = search(data_dir, ["celeba", "CelebA"], lambda f: f if is_celeba(f) else None)
    if found is None:
        raise DataError(
            f"CelebA ({CELEBA_IMAGES}/ and {CELEBA_ATTRIBUTES}) not found; "
            f"looked in: {'; '.join(looked)}. Pass --data-dir DIR or --dataset celeba:PATH"
        )
    return _celeba(found, image_size or CELEBA_SIZE, name="celeba")


def load_celeba_folder(path: str | os.PathLike, image_size: int | None = None) -> Dataset:
    folder = Path(path).expanduser().resolve()
    if not is_celeba(folder):
        raise DataError(
            f"{folder} is not in CelebA's layout: it needs {CELEBA_IMAGES}/ and {CELEBA_ATTRIBUTES}"
        )
    return _celeba(folder, image_size or CELEBA_SIZE, name=f"celeba:{path}")


def _celeba(folder: Path, size: int, name: str) -> Dataset:
    decoded, attributes, names = read_celeba(folder, size)
    images = torch.from_numpy(np.array(decoded.images))
    attrs = torch.from_numpy(attributes)
    partition_file = folder / CELEBA_PARTITION
    if partition_file.is_file():
        part = read_celeba_partition(partition_file)
        which = torch.tensor([part.get(f, 0) for f in decoded.files])
        tr, te, va = ((which == k).nonzero().squeeze(1) for k in (0, 2, 1))
        if len(te) == 0:
            tr, te = split(images, None, 0, CELEBA_TEST / len(images))
            va = None
    else:
        tr, te = split(images, None, 0, min(0.5, CELEBA_TEST / len(images)))
        va = None
    return Dataset(
        name=name,
        train=images[tr],
        test=images[te],
        valid=None if va is None or len(va) == 0 else images[va],
        image_shape=tuple(images.shape[1:]),
        source=str(folder),
        attribute_names=names,
        train_attributes=attrs[tr],
        test_attributes=attrs[te],
    )


DATASETS.register("celeba", load_celeba, "CelebA's aligned faces + 40 attributes, 64 x 64 x 3")
SOURCES.register("celeba", load_celeba_folder, "a folder in CelebA's layout")
