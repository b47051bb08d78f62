"""Image files and arrays -> uint8 images (N, C, H, W): a folder of PNG/JPEG files, ``.npy`` /
``.npz`` arrays, with a decoded cache (CelebA's files: :mod:`pyro_vae.data.celeba`).

Decoding tens of thousands of JPEGs happens once: the decoded uint8 array is cached under
``$PYRO_VAE_CACHE`` (default ``~/.cache/pyro-vae/images``), keyed by the folder's file list
(relative paths, sizes, modification times) and the requested size, so a changed folder is
decoded again. Nothing is written into the user's data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CACHE_VAR = "PYRO_VAE_CACHE"
CACHE_VERSION = 1


class DataError(RuntimeError):
    """A data file is missing, truncated or malformed, or images cannot become a data set (one
    line: what, where, the fix). Also ``pyro_vae.data.DataError``."""


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$PYRO_VAE_CACHE``, else
    ``~/.cache/pyro-vae/images``."""
    env = os.environ.get(CACHE_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pyro-vae" / "images"


@dataclass(frozen=True)
class Decoded:
    """Images of one split as uint8 (N, C, H, W), class labels (indices into ``class_names``)
    where the files sit in class folders, and the files' paths relative to the folder."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    files: tuple[str, ...]


# --- finding and decoding files ----------------------------------------------------------------


def is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def list_split(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """The image files of one split folder, sorted: either images directly in it (no labels)
    or in class subfolders (labels are the sorted subfolder names' indices)."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give a folder of images")
    direct = sorted(p for p in folder.iterdir() if is_image(p))
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_files = {c.name: sorted(p for p in c.rglob("*") if is_image(p)) for c in classes}
    class_files = {name: files for name, files in class_files.items() if files}
    if direct and class_files:
        raise DataError(
            f"{folder} holds images ({direct[0].name}, ...) beside class folders "
            f"({', '.join(list(class_files)[:3])}): move the loose images into a class folder, "
            "or the class folders' images up"
        )
    if direct:
        return direct, None, ()
    if not class_files:
        anything = next((p for p in folder.rglob("*") if p.is_file()), None)
        what = f"no image files (first file: {anything.name})" if anything else "nothing"
        raise DataError(
            f"{folder} holds {what}: put PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)}) in it, "
            "directly or in one subfolder per class"
        )
    names = tuple(class_files)
    files = [p for name in names for p in class_files[name]]
    labels = [i for i, name in enumerate(names) for _ in class_files[name]]
    return files, labels, names


def _open(path: Path, size: int | None, crop: float) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
            img = img.convert("L" if grey else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(
            f"{path} could not be decoded as an image ({e}): replace or remove the file"
        ) from None
    if size is not None:
        img = _crop_resize(img, size, crop)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _crop_resize(img, size: int, crop: float):  # type: ignore[no-untyped-def]
    """The centre square (side: ``crop`` times the shorter side), resized to size x size."""
    from PIL import Image

    w, h = img.size
    side = max(1, round(min(w, h) * crop))
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.BICUBIC) if side != size else img


def decode(
    files: Sequence[Path], size: int | None = None, crop: float = 1.0, progress: str = ""
) -> np.ndarray:
    """Decode image files into one uint8 array (N, C, H, W). With ``size``, each is
    centre-cropped to a square (``crop`` of its shorter side) and resized to size x size;
    without, all must have the same size. Grey and colour files together give colour (the grey
    ones repeated over R, G, B; a line on stderr says how many)."""
    if not files:
        raise DataError("no image files to decode")
    workers = min(8, os.cpu_count() or 1) if len(files) > 256 else 1
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda p: _open(p, size, crop), files, chunksize=64))
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape[1:]
        other = next(i for i, a in enumerate(arrays) if a.shape[1:] != first)
        raise DataError(
            f"images of different sizes: {files[0]} is {first[1]} x {first[0]}, {files[other]} "
            f"is {arrays[other].shape[2]} x {arrays[other].shape[1]} (width x height): pass "
            "--image-size S to crop and resize them all to S x S"
        )
    channels = {a.shape[0] for a in arrays}
    if channels == {1, 3}:
        n_grey = sum(a.shape[0] == 1 for a in arrays)
        print(
            f"{progress or 'images'}: {n_grey} grey of {len(arrays)} images converted to colour "
            "(R = G = B)",
            file=sys.stderr,
        )
        arrays = [np.repeat(a, 3, 0) if a.shape[0] == 1 else a for a in arrays]
    return np.stack(arrays)


# --- the cache ---------------------------------------------------------------------------------


def fingerprint(folder: Path, files: Sequence[Path], **settings: object) -> str:
    """A key for the decoded contents of ``files``: their paths relative to ``folder``,
    sizes and modification times, and the decoding ``settings``."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cached(key: str, make: Callable[[], dict[str, np.ndarray]], name: str) -> dict[str, np.ndarray]:
    """The arrays saved under ``key``, or ``make()``'s, saved there first (atomically: a
    half-written entry is never read). Arrays are memory-mapped (``np.load(mmap_mode="r")``)."""
    entry = cache_dir() / f"{name}-{key}"
    if not (entry / "done").is_file():
        arrays = make()
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-"))
        try:
            for k, a in arrays.items():
                np.save(tmp / f"{k}.npy", a, allow_pickle=False)
            (tmp / "done").write_text(json.dumps(sorted(arrays)))
            if entry.exists():
                shutil.rmtree(entry)
            tmp.rename(entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"decoded images cached in {entry}", file=sys.stderr)
    keys = json.loads((entry / "done").read_text())
    return {k: np.load(entry / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in keys}


def load_split(folder: Path, size: int | None, crop: float = 1.0, cache: bool = True) -> Decoded:
    """One split folder, decoded (through the cache)."""
    files, labels, names = list_split(folder)

    def make() -> dict[str, np.ndarray]:
        out = {"images": decode(files, size, crop, progress=str(folder))}
        if labels is not None:
            out["labels"] = np.asarray(labels, dtype=np.int64)
        return out

    if cache:
        key = fingerprint(folder, files, size=size, crop=crop, classes=names)
        arrays = cached(key, make, _slug(folder))
    else:
        arrays = make()
    rel = tuple(str(p.relative_to(folder)) for p in files)
    return Decoded(arrays["images"], arrays.get("labels"), names, rel)


def _slug(folder: Path) -> str:
    name = "-".join(folder.resolve().parts[-2:])
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]


# --- arrays --------------------------------------------------------------------------------------


def as_uint8_images(array: np.ndarray, where: str) -> np.ndarray:
    """An array of images as uint8 (N, C, H, W): (N, H, W) grey, (N, H, W, C) or (N, C, H, W)
    with C of 1 or 3 (channels last when the last axis has 1, 3 or 4 entries; an alpha
    channel is dropped); uint8 levels, or floats in [0, 1] (rounded to the 256 levels)."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        pass
    elif a.dtype.kind == "f":
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 1):
            raise DataError(
                f"{where}: float images must lie in [0, 1]; these span [{lo:g}, {hi:g}]: scale "
                "them, or save uint8 levels 0..255"
            )
        a = np.rint(a * 255).astype(np.uint8)
    else:
        raise DataError(
            f"{where}: images of dtype {a.dtype} are not supported: save uint8 levels 0..255 or "
            "floats in [0, 1]"
        )
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4):
        a = a[..., :3].transpose(0, 3, 1, 2) if a.shape[-1] != 1 else a.transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] in (1, 3):
        pass
    else:
        raise DataError(
            f"{where}: an array of shape {a.shape} is not images: give (N, H, W), (N, H, W, C) "
            "or (N, C, H, W) with C = 1 or 3"
        )
    return np.ascontiguousarray(a)


def as_labels(array: np.ndarray, n: int, where: str) -> np.ndarray:
    a = np.asarray(array)
    if a.shape != (n,) or a.dtype.kind not in "iu":
        raise DataError(
            f"{where}: labels must be {n} integers (one per image); got {a.dtype} {a.shape}"
        )
    if n and a.min() < 0:
        raise DataError(f"{where}: labels must be >= 0; the smallest is {a.min()}")
    return a.astype(np.int64)


def stream(x: Tensor) -> Tensor:
    """``x`` as a CPU tensor over a memory-mapped file (in the image cache folder, named by
    its contents): pages are read as batches touch them and the RAM copy can go."""
    array = x.cpu().numpy()
    key = hashlib.sha256(np.ascontiguousarray(array[:: max(1, len(array) // 64)]).tobytes())
    key.update(repr((array.shape, array.dtype.str, float(array.sum(dtype=np.float64)))).encode())
    arrays = cached(key.hexdigest()[:20], lambda: {"train": array}, "stream")
    with warnings.catch_warnings():  # read-only on purpose: batches only read it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arrays["train"])
