"""The cache of decoded images and memory-mapped data, under ``$PYRO_VAE_CACHE`` (default
``~/.cache/pyro-vae/images``): one folder per entry, named by a key of its contents (a SHA-256
of the bytes it was built from), holding ``.npy`` arrays read memory-mapped and a ``done`` file
listing their shapes. Entries are written atomically; a damaged entry is rebuilt with a note on
stderr, never read; where the cache cannot be written, the arrays are used from memory, with a
note.
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
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CACHE_VAR = "PYRO_VAE_CACHE"
CACHE_VERSION = 2  # 2: keyed by the files' bytes; 16-bit, palette and alpha converted anew


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$PYRO_VAE_CACHE``, else
    ``~/.cache/pyro-vae/images``."""
    env = os.environ.get(CACHE_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pyro-vae" / "images"


def cache_key(folder: Path, files: Sequence[Path], digests: Sequence[bytes], settings: dict) -> str:
    """A cache key for ``files`` under ``folder`` from their ``digests`` (SHA-256 of their
    bytes), their relative paths and the decoding ``settings``."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for p, d in zip(files, digests, strict=True):
        h.update(f"{p.relative_to(folder)}\0".encode())
        h.update(d)
    return h.hexdigest()[:24]


def _read_entry(entry: Path) -> dict[str, np.ndarray]:
    """A cache entry's arrays, memory-mapped, checked against the shapes its ``done`` lists
    (any fault raises)."""
    try:
        listed = json.loads((entry / "done").read_text())
    except json.JSONDecodeError:
        raise ValueError("its 'done' file is garbled") from None
    if isinstance(listed, list):  # version 1: names only
        listed = {k: None for k in listed}
    if not isinstance(listed, dict) or not listed:
        raise ValueError("its 'done' lists no arrays")
    arrays = {}
    for k, spec in listed.items():
        a = np.load(entry / f"{k}.npy", mmap_mode="r", allow_pickle=False)
        if spec is not None and [list(a.shape), a.dtype.str] != spec:
            raise ValueError(f"{k}.npy is {a.dtype.str} {a.shape}, its 'done' says {spec}")
        arrays[k] = a
    return arrays


def _write_entry(entry: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save ``arrays`` as ``entry`` atomically: a half-written entry is never read."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-"))
    try:
        for k, a in arrays.items():
            np.save(tmp / f"{k}.npy", a, allow_pickle=False)
        listed = {k: [list(a.shape), np.asarray(a).dtype.str] for k, a in arrays.items()}
        (tmp / "done").write_text(json.dumps(listed))
        try:
            tmp.rename(entry)
        except OSError:  # the entry is there: another process's, just written, or damaged
            try:
                _read_entry(entry)
                shutil.rmtree(tmp, ignore_errors=True)
                return
            except (OSError, ValueError, EOFError, TypeError, AttributeError):
                shutil.rmtree(entry, ignore_errors=True)
                tmp.rename(entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached(key: str, make: Callable[[], dict[str, np.ndarray]], name: str) -> dict[str, np.ndarray]:
    """The arrays saved under ``key``, or ``make()``'s, saved there first (atomically: a
    half-written entry is never read). Arrays are memory-mapped (``np.load(mmap_mode="r")``).
    A damaged entry (a truncated or missing array, a garbled ``done``) is rebuilt, with a
    note on stderr; where the cache cannot be written, ``make()``'s arrays are returned, with a
    note."""
    entry = cache_dir() / f"{name}-{key}"
    damaged = ""
    if (entry / "done").exists():
        try:
            return _read_entry(entry)
        except (OSError, ValueError, EOFError, TypeError, AttributeError) as e:
            damaged = f"{entry}: damaged cache entry ({e}): rebuilt"
    arrays = make()
    try:
        _write_entry(entry, arrays)
        written = _read_entry(entry)
    except (OSError, ValueError, EOFError) as e:
        print(
            f"the cache could not be written in {entry.parent} ({getattr(e, 'strerror', 0) or e})"
            f": the data are kept in memory; set ${CACHE_VAR} to a writable folder",
            file=sys.stderr,
        )
        return arrays
    print(damaged or f"decoded images cached in {entry}", file=sys.stderr)
    return written


def stream(x: Tensor) -> Tensor:
    """``x`` as a CPU tensor over a memory-mapped file (in the image cache folder, named by a
    SHA-256 of its bytes, shape and dtype): pages are read as batches touch them and the RAM
    copy can go. Where the file cannot be written, ``x`` itself (with a note)."""
    array = np.ascontiguousarray(x.cpu().numpy())
    key = hashlib.sha256(repr((array.shape, array.dtype.str)).encode())
    key.update(memoryview(array.reshape(-1)).cast("B"))
    arrays = cached(key.hexdigest()[:24], lambda: {"train": array}, "stream")
    with warnings.catch_warnings():  # read-only on purpose: batches only read it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arrays["train"])
