"""Image files and arrays -> uint8 images (N, C, H, W): a folder of PNG/JPEG files, ``.npy`` /
``.npz`` arrays, with a decoded cache (CelebA's files: :mod:`pyro_vae.data.celeba`).

Decoding tens of thousands of JPEGs happens once: the decoded uint8 array is cached
(:mod:`pyro_vae.data.cache`), keyed by a SHA-256 of the files' bytes (and their relative paths
and the requested size), so any change to a file, even one that keeps its size and
modification time, is decoded again. Nothing is written into the user's data folder.

Folders are walked following symbolic links, each file once: a file reached twice (through a
link, or a hard link) counts once, a link back to a folder that holds it is refused.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import sys
import warnings
from collections.abc import MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cache_key, cached

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

FileId = tuple[int, int]  # (device, inode): the same file, whatever the path to it


class DataError(RuntimeError):
    """A data file is missing, truncated or malformed, or images cannot become a data set (one
    line: what, where, the fix). Also ``pyro_vae.data.DataError``."""


@dataclass(frozen=True)
class Decoded:
    """Images of one split as uint8 (N, C, H, W), class labels (indices into ``class_names``)
    where the files sit in class folders, and the files' paths relative to the folder."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    files: tuple[str, ...]


# --- memory ------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_image_size(count: int, channels: int, size: int, what: str, extra: int = 0) -> None:
    """Refuse, before allocating, ``count`` images of ``channels`` x ``size`` x ``size`` whose
    side is past Pillow's decompression-bomb limit, or whose bytes (twice theirs, for the copy
    made on the way, plus ``extra``) exceed the memory available now."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit and size * size > limit:
        raise DataError(
            f"--image-size {size} makes images of {size * size:,} pixels, over the limit of "
            f"{limit:,} (Pillow's decompression-bomb limit): pass a smaller --image-size "
            "(64 for instance)"
        )
    check_memory(
        2 * count * channels * size * size + extra,
        f"{what}: {count:,} images of {channels} x {size} x {size}",
        "pass a smaller --image-size (64 for instance)",
    )


def check_memory(need: int, what: str, fix: str) -> None:
    """Refuse, before allocating, ``need`` bytes that exceed the memory available now."""
    free = available_memory()
    if free is not None and need > free:
        raise DataError(
            f"{what} need {need / 2**30:,.1f} GiB of memory, more than the "
            f"{free / 2**30:,.1f} GiB available: {fix}"
        )


# --- finding files -----------------------------------------------------------------------------


def is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def unreadable(path: Path, e: OSError) -> DataError:
    """The one line for a file or folder that cannot be read."""
    if isinstance(e, PermissionError):
        try:
            mode = "u+rx" if path.is_dir() else "u+r"
        except OSError:  # its folder cannot be read either
            mode = "u+rx"
        return DataError(
            f"{path} cannot be read (permission denied): make it readable (chmod {mode}) or "
            "move it out of the data folder"
        )
    return DataError(
        f"{path} cannot be read ({e.strerror or e}): repair it or move it out of the data folder"
    )


def _entries(folder: Path) -> list[tuple[Path, os.stat_result, bool]]:
    """The visible entries of ``folder`` sorted by name: path, status (links followed) and
    whether the entry is a symbolic link. Broken links to images or folders are refused."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise unreadable(folder, e) from None
    out = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise DataError(
                    f"{path} is a symbolic link loop (it never reaches a file): remove the link"
                ) from None
            if entry.is_symlink() and e.errno == errno.ENOENT:
                if path.suffix and path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue  # a broken link to a text file or such: not an image either way
                raise DataError(
                    f"{path} is a broken symbolic link (to {os.readlink(path)}): restore its "
                    "target or remove the link"
                ) from None
            raise unreadable(path, e) from None
        out.append((path, st, entry.is_symlink()))
    return out


def _walk(
    folder: Path,
    ancestors: dict[FileId, Path],
    link: Path | None,
    links: int,
    found: list[tuple[Path, FileId, int]],
) -> None:
    """Append ``(path, file id, symbolic links on the way)`` of every image file below
    ``folder``, following links (``link``: the last one on the way there); a link to a
    folder that holds it is refused."""
    for path, st, is_link in _entries(folder):
        ident = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            _check_loop(path if is_link else link or path, ident, ancestors)
            last = path if is_link else link
            _walk(path, {**ancestors, ident: path}, last, links + is_link, found)
        elif stat.S_ISREG(st.st_mode) and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append((path, ident, links + is_link))


def _check_loop(link: Path, ident: FileId, ancestors: dict[FileId, Path]) -> None:
    if ident in ancestors:
        raise DataError(
            f"{link} leads back to {ancestors[ident]}, a folder that holds it (a symbolic link "
            "loop): remove the link"
        )


def list_split(
    folder: Path, taken: MutableMapping[FileId, Path] | None = None
) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """The image files of one split folder, sorted: either images directly in it (no labels)
    or in class subfolders (labels are the sorted subfolder names' indices). Symbolic links
    are followed; a file reached twice counts once (where it is reached through the fewest
    links; a note on stderr says how many). ``taken``: the files of another split (by file
    id): one of them here is refused; this split's files are added to it."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give a folder of images")
    st = folder.stat()
    root = {(st.st_dev, st.st_ino): folder}
    direct: list[tuple[Path, FileId, int]] = []
    classes: dict[str, list[tuple[Path, FileId, int]]] = {}
    for path, st, is_link in _entries(folder):
        ident = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            _check_loop(path, ident, root)
            found = classes.setdefault(path.name, [])
            _walk(path, {**root, ident: path}, path if is_link else None, int(is_link), found)
        elif stat.S_ISREG(st.st_mode) and path.suffix.lower() in IMAGE_SUFFIXES:
            direct.append((path, ident, int(is_link)))
    # each file once: where it is reached through the fewest links, then first by path
    every = sorted(
        (links, str(path), name, path, ident)
        for name, found in (("", direct), *classes.items())
        for path, ident, links in found
    )
    kept: dict[FileId, Path] = {}
    keep: dict[str, list[Path]] = {}
    twice = []
    for _, _, name, path, ident in every:
        if ident in kept:
            twice.append((path, kept[ident]))
            continue
        kept[ident] = path
        keep.setdefault(name, []).append(path)
    if twice:
        path, first = min(twice)
        print(
            f"{folder}: {len(twice)} file(s) reached again through links counted once (first: "
            f"{path.relative_to(folder)}, the same file as {first.relative_to(folder)})",
            file=sys.stderr,
        )
    if taken is not None:
        both = sorted(path for ident, path in kept.items() if ident in taken)
        if both:
            other = taken[next(i for i, p in kept.items() if p == both[0])]
            raise DataError(
                f"{both[0]} is the same file as {other} (through a link): the test images must "
                "not be training images: remove the link or the copy"
            )
        taken.update(kept)
    files_direct = sorted(keep.pop("", []))
    class_files = {name: sorted(files) for name, files in sorted(keep.items())}
    if files_direct and class_files:
        raise DataError(
            f"{folder} holds images ({files_direct[0].name}, ...) beside class folders "
            f"({', '.join(list(class_files)[:3])}): move the loose images into a class folder, "
            "or the class folders' images up"
        )
    if files_direct:
        return files_direct, None, ()
    if not class_files:
        anything = next((p for p in sorted(folder.rglob("*")) if p.is_file()), None)
        what = f"no image files (first file: {anything.name})" if anything else "nothing"
        raise DataError(
            f"{folder} holds {what}: put PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)}) in it, "
            "directly or in one subfolder per class"
        )
    names = tuple(class_files)
    files = [p for name in names for p in class_files[name]]
    labels = [i for i, name in enumerate(names) for _ in class_files[name]]
    return files, labels, names


# --- decoding ----------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise unreadable(path, e) from None


def _too_large(path: Path, pixels: int | None = None) -> DataError:
    from PIL import Image

    size = f" ({pixels:,} pixels)" if pixels else ""
    return DataError(
        f"{path} is too large to decode safely{size}, over Pillow's limit of "
        f"{Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?): shrink or remove the file, "
        "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
    )


def _open(path: Path, size: int | None, crop: float, digest: bytes | None = None) -> np.ndarray:
    """One image file as uint8 (C, H, W) (see :func:`eight_bit`), cropped and resized where
    ``size`` is given. ``digest``: the SHA-256 its bytes must have (the cache's key)."""
    from PIL import Image, UnidentifiedImageError

    raw = _read(path)
    if digest is not None and hashlib.sha256(raw).digest() != digest:
        raise DataError(f"{path} changed while it was being read: run again")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
            if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                raise _too_large(path, w * h)
            img.load()
            img = eight_bit(img, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(path, int(found.group(1)) if found else None) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = "no image format Pillow reads" if isinstance(e, UnidentifiedImageError) else e
        raise DataError(
            f"{path} could not be decoded as an image ({why}): replace or remove the file"
        ) from None
    if size is not None:
        img = _crop_resize(img, size, crop)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _on_white(a: np.ndarray) -> np.ndarray:
    """(H, W, C + 1) uint8 with alpha last -> (H, W, C): composited on white, rounded."""
    colour, alpha = a[..., :-1].astype(np.uint32), a[..., -1:].astype(np.uint32)
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def eight_bit(img, path: Path):  # type: ignore[no-untyped-def]
    """A decoded PIL image as 8 bits per channel, mode ``L`` (grey) or ``RGB``:

    - 16-bit grey (``I;16``, and ``I`` within 0..65535) keeps its top 8 bits (``v >> 8``, as
      Pillow reads 16-bit colour PNGs); other ``I`` values are refused;
    - floats (``F``) must lie in [0, 1] and are rounded to 0..255; others are refused;
    - transparency (``RGBA``, ``LA``, palettes with a transparent colour) is composited on
      white, as the image shows on a white page; the alpha channel is not kept;
    - palette images become grey where every pixel is grey, else colour; 1-bit images 0/255;
      CMYK, YCbCr, LAB and HSV are converted to RGB by Pillow.
    """
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{path} holds integer pixels from {lo} to {hi}, beyond 16 bits (0..65535): save "
                "it as an 8- or 16-bit image"
            )
        return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), "L")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 1):
            raise DataError(
                f"{path} holds float pixels spanning [{lo:g}, {hi:g}], not [0, 1]: scale them "
                "to [0, 1], or save 8-bit levels"
            )
        return Image.fromarray(np.rint(a * 255).astype(np.uint8), "L")
    if mode in ("LA", "La"):
        return Image.fromarray(_on_white(np.asarray(img.convert("LA")))[..., 0], "L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        a = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
        rgb = _on_white(a) if has_alpha else a
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), "L")
        return Image.fromarray(rgb, "RGB")
    if mode in ("RGBA", "RGBa"):
        return Image.fromarray(_on_white(np.asarray(img.convert("RGBA"))), "RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        raise DataError(
            f"{path} has Pillow image mode {mode}, which is not supported: save it as an 8-bit "
            "grey or RGB image"
        ) from None


def _crop_resize(img, size: int, crop: float):  # type: ignore[no-untyped-def]
    """The centre square (side: ``crop`` times the shorter side), resized to size x size."""
    from PIL import Image

    w, h = img.size
    side = max(1, round(min(w, h) * crop))
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.BICUBIC) if side != size else img


GREY_MODES = ("1", "L", "LA", "La", "I", "F")


def _check_size(files: Sequence[Path], size: int | None, workers: int, progress: str) -> None:
    """Refuse, from the first file's header, a decoded array too large for the memory."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(_read(files[0]))) as img:
            w, h = img.size
            c = 1 if img.mode in GREY_MODES or img.mode.startswith("I;16") else 3
    except (DataError, OSError, ValueError, SyntaxError, Warning, Image.DecompressionBombError):
        return  # a file that cannot be opened is _open's to report, naming it
    what = progress or "the images"
    if size is not None:  # plus the images being resized at the time
        check_image_size(len(files), c, size, what, extra=workers * c * size * size)
    else:
        check_memory(
            2 * len(files) * c * w * h,
            f"{what}: {len(files):,} images of {c} x {w} x {h}",
            "pass --image-size S to resize them to S x S",
        )


def decode(
    files: Sequence[Path],
    size: int | None = None,
    crop: float = 1.0,
    progress: str = "",
    digests: Sequence[bytes] | None = None,
) -> np.ndarray:
    """Decode image files into one uint8 array (N, C, H, W) (each file converted by
    :func:`eight_bit`). With ``size``, each is centre-cropped to a square (``crop`` of its
    shorter side) and resized to size x size; without, all must have the same size. Grey and
    colour files together give colour (the grey ones repeated over R, G, B; a line on stderr
    says how many). Too large a result for the memory is refused before decoding.
    ``digests``: each file's SHA-256 as the cache key was made from (a file changed since is
    refused)."""
    if not files:
        raise DataError("no image files to decode")
    from PIL import Image

    workers = min(8, os.cpu_count() or 1) if len(files) > 256 else 1
    expect = list(digests) if digests is not None else [None] * len(files)
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        _check_size(files, size, workers, progress)
        arrays = list(pool.map(lambda p, d: _open(p, size, crop, d), files, expect, chunksize=64))
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


def file_digests(files: Sequence[Path]) -> list[bytes]:
    """The SHA-256 of each file's bytes. One thread: for many small files it is faster than
    several (about 0.1 s for 10,000 files of 4 KB whose pages are cached)."""
    return [hashlib.sha256(_read(p)).digest() for p in files]


def fingerprint(folder: Path, files: Sequence[Path], **settings: object) -> str:
    """A key for the decoded contents of ``files``: a SHA-256 of their bytes and their paths
    relative to ``folder``, and the decoding ``settings``."""
    return cache_key(folder, files, file_digests(files), settings)


def load_split(
    folder: Path,
    size: int | None,
    crop: float = 1.0,
    cache: bool = True,
    listing: tuple[list[Path], list[int] | None, tuple[str, ...]] | None = None,
) -> Decoded:
    """One split folder, decoded (through the cache). ``listing``: its
    :func:`list_split`, where already made."""
    files, labels, names = listing if listing is not None else list_split(folder)
    digests = file_digests(files) if cache else None

    def make() -> dict[str, np.ndarray]:
        out = {"images": decode(files, size, crop, progress=str(folder), digests=digests)}
        if labels is not None:
            out["labels"] = np.asarray(labels, dtype=np.int64)
        return out

    if digests is not None:
        key = cache_key(folder, files, digests, {"size": size, "crop": crop, "classes": names})
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
    channel is dropped); uint8 levels, bools (0 and 255), or floats in [0, 1] (rounded to the
    256 levels). No images, or images of no pixels, are refused."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            raise DataError(
                f"{where}: {int((~finite).sum()):,} pixel values are NaN or inf: repair or drop "
                "those images"
            )
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
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
    if len(a) == 0:
        raise DataError(f"{where}: the array holds no images (shape {array.shape}): give some")
    if a.shape[2] == 0 or a.shape[3] == 0:
        raise DataError(
            f"{where}: images of {a.shape[2]} x {a.shape[3]} pixels (shape {array.shape}) hold "
            "nothing: give images of at least 1 x 1"
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
