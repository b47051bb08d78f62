"""CelebA's aligned faces in CelebA's own layout, with their 40 binary attributes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import imagefiles
from .cache import cached
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


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} could not be read ({e}): replace it") from None


def read_celeba_attributes(path: Path) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """CelebA's ``list_attr_celeba.txt``: a count line, the attribute names, then one line per
    image (file name and one -1/1 per attribute). Returns files, names, and a bool array.
    The count line must agree with the rows (a file cut short is refused, not half-read)."""
    lines = _lines(path)
    layout = "CelebA's layout is a count line, the attribute names, then one row per image"
    if len(lines) < 2:
        raise DataError(f"{path} has {len(lines)} line(s): {layout}; fetch it again")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(
            f"{path}, line 1: expected the number of images, got {lines[0].strip()[:40]!r}: "
            f"{layout}"
        ) from None
    names = tuple(lines[1].split())
    twice = sorted({n for n in names if names.count(n) > 1})
    if not names or twice:
        what = f"names {twice[0]} twice" if twice else "names no attributes"
        raise DataError(f"{path}, line 2 {what}: {layout}; fix or replace the file")
    files: list[str] = []
    rows = []
    first_line: dict[str, int] = {}
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(
                f"{path}, line {i}: expected a file name and {len(names)} values of -1 or 1 (one "
                f"per name on line 2); got {len(parts)} fields: fix or replace the file"
            )
        bad = next((k for k, v in enumerate(parts[1:]) if v not in ("1", "-1")), None)
        if bad is not None:
            raise DataError(
                f"{path}, line {i}: expected a file name and {len(names)} values of -1 or 1; "
                f"{names[bad]} of {parts[0]} is {parts[bad + 1]!r}: fix or replace the file"
            )
        if parts[0] in first_line:
            raise DataError(
                f"{path}, line {i}: {parts[0]} is listed again (first on line "
                f"{first_line[parts[0]]}): remove one of the two rows"
            )
        if Path(parts[0]).name != parts[0] or parts[0] in (".", ".."):
            raise DataError(
                f"{path}, line {i}: {parts[0]!r} is not a file name in {CELEBA_IMAGES}/: fix "
                "or replace the file"
            )
        first_line[parts[0]] = i
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    if not files:
        raise DataError(f"{path} lists no images: {layout}; fetch it again")
    if len(files) != count:
        cut = "is cut short" if len(files) < count else "holds more rows than it says"
        raise DataError(
            f"{path} {cut}: {len(files)} image rows found, {count} expected (its first line): "
            f"fetch it again, or set the first line to {len(files)} if you cut it on purpose"
        )
    return files, names, np.asarray(rows, dtype=bool).reshape(len(rows), len(names))


PARTITIONS = ("0", "1", "2")  # train, valid, test


def read_celeba_partition(path: Path) -> dict[str, int]:
    """CelebA's ``list_eval_partition.txt``: one line per image, its file name and 0 (train),
    1 (valid) or 2 (test). Returns the split of each file."""
    out: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for i, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in PARTITIONS:
            raise DataError(
                f"{path}, line {i}: expected a file name and 0 (train), 1 (valid) or 2 (test), "
                f"got {line.strip()[:60]!r}: fix the file, or delete it for a seeded split"
            )
        if parts[0] in first_line:
            raise DataError(
                f"{path}, line {i}: {parts[0]} is listed again (first on line "
                f"{first_line[parts[0]]}): remove one of the two rows"
            )
        first_line[parts[0]] = i
        out[parts[0]] = int(parts[1])
    return out


def read_celeba(
    folder: Path, size: int, cache: bool = True
) -> tuple[Decoded, np.ndarray, tuple[str, ...]]:
    """CelebA in its own layout: the images the attribute file lists, in its order, the
    central crop (:data:`CELEBA_CROP` of the width) resized to size x size. Returns the
    decoded images, the attributes (N, 40) bool and their names."""
    files, names, attributes = read_celeba_attributes(folder / CELEBA_ATTRIBUTES)
    return _decode(folder, files, size, cache), attributes, names


def _decode(folder: Path, files: list[str], size: int, cache: bool = True) -> Decoded:
    """The images ``files`` of ``folder``'s ``img_align_celeba``, decoded (once: cached)."""
    paths = [folder / CELEBA_IMAGES / f for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{folder / CELEBA_ATTRIBUTES} lists {len(missing)} images missing from "
            f"{folder / CELEBA_IMAGES} (first: {missing[0].name}): restore them, or cut their "
            "rows from the attribute file (and lower the count on its first line)"
        )

    def make() -> dict[str, np.ndarray]:
        return {"images": imagefiles.decode(paths, size, CELEBA_CROP, progress=str(folder))}

    if cache:
        key = imagefiles.fingerprint(
            folder, paths, size=size, crop=CELEBA_CROP, attributes=len(files)
        )
        arrays = cached(key, make, "celeba")
    else:
        arrays = make()
    return Decoded(arrays["images"], None, (), tuple(files))


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


def _partition(
    path: Path, files: list[str], attributes: Path
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Indices (train, test, valid) of ``files`` by CelebA's partition file. Every image must
    have a row and the training split must not be empty; an empty test split (a subset of
    CelebA's first images: all in its training split) holds out a seeded 1,000 (at most half)
    of the training images instead, with a note."""
    part = read_celeba_partition(path)
    absent = [f for f in files if f not in part]
    if absent:
        raise DataError(
            f"{path} has no row for {len(absent)} of the {len(files)} images in {attributes} "
            f"(first: {absent[0]}): add their rows, or delete it for a seeded split"
        )
    which = torch.tensor([part[f] for f in files])
    tr, va, te = ((which == k).nonzero().squeeze(1) for k in (0, 1, 2))
    if len(tr) == 0:
        raise DataError(
            f"{path} puts none of the {len(files)} images into the training split (0; "
            f"{len(va)} valid, {len(te)} test): fix the file, or delete it for a seeded split"
        )
    if len(te) == 0:
        if len(tr) < 2:
            raise DataError(
                f"{path} puts no image into the test split (2) and {len(tr)} into the training "
                "split (0): give each at least one, or delete it for a seeded split"
            )
        keep, held = split(tr, None, 0, min(0.5, CELEBA_TEST / len(tr)))
        print(
            f"note: {path} puts none of these {len(files)} images into the test split (2): a "
            f"seeded {len(held)} of its {len(tr)} training images are held out for testing",
            file=sys.stderr,
        )
        tr, te = tr[keep], tr[held]
    return tr, te, va if len(va) else None


def _celeba(folder: Path, size: int, name: str) -> Dataset:
    files, names, attributes = read_celeba_attributes(folder / CELEBA_ATTRIBUTES)
    partition_file = folder / CELEBA_PARTITION
    parts = None  # checked before decoding: a bad partition file leaves no cache behind
    if partition_file.is_file():
        parts = _partition(partition_file, files, folder / CELEBA_ATTRIBUTES)
    images = torch.from_numpy(np.array(_decode(folder, files, size).images))
    attrs = torch.from_numpy(attributes)
    if parts is None:
        tr, te = split(images, None, 0, min(0.5, CELEBA_TEST / len(images)))
        va = None
    else:
        tr, te, va = parts
    return Dataset(
        name=name,
        train=images[tr],
        test=images[te],
        valid=None if va is None else images[va],
        image_shape=tuple(images.shape[1:]),
        source=str(folder),
        attribute_names=names,
        train_attributes=attrs[tr],
        test_attributes=attrs[te],
    )


DATASETS.register("celeba", load_celeba, "CelebA's aligned faces + 40 attributes, 64 x 64 x 3")
SOURCES.register("celeba", load_celeba_folder, "a folder in CelebA's layout")
