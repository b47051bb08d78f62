"""Where data sets come from: the registries of named data sets and of path schemes, the
search of the data folders, and :func:`load`.

Each source module of this package (``idx``, ``amat``, ``faces``, ``files``, ``celeba``,
``dsprites``) registers its loaders here; a new source is one module plus one import line in
``pyro_vae/data/__init__.py``. A named loader takes the data folder (or None), and
``image_size`` where it decodes files; a scheme's loader (``--dataset SCHEME:PATH``) takes the
path. A user's loader is named by import path (``--dataset mypkg.data:load``) or added through
the ``pyro_vae.datasets`` entry point group.

Where files are looked for: ``data_dir`` (``--data-dir``), then the folder named by the
environment variable ``PYRO_VAE_DATA``; in each, the folder itself and the source's subfolders.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ..registry import Registry, construct
from .dataset import Dataset, require_data, resize
from .imagefiles import DataError

T = TypeVar("T")

ENV_VAR = "PYRO_VAE_DATA"
IN_MEMORY = "python"  # the data set name of a run trained on data given from Python
CACHE_DIR = Path.home() / ".cache" / "pyro-vae"

DATASETS: Registry = Registry("dataset", group="pyro_vae.datasets")
SOURCES: Registry = Registry("data source")


def find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def roots_of(data_dir: str | os.PathLike | None) -> list[Path]:
    roots = [Path(data_dir).expanduser()] if data_dir else []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    return roots


def search(
    data_dir: str | os.PathLike | None, subfolders: Sequence[str], load: Callable[[Path], T | None]
) -> tuple[T | None, list[str]]:
    """``load(folder)`` for each root (``data_dir``, then ``$PYRO_VAE_DATA``) and each of its
    ``subfolders`` in turn: the first result that is not None, and the folders looked in."""
    roots = roots_of(data_dir)
    looked = [] if roots else [f"no --data-dir given and ${ENV_VAR} unset"]
    for root in roots:
        for folder in (root, *(root / s for s in subfolders)):
            looked.append(str(folder))
            found = load(folder)
            if found is not None:
                return found, looked
    return None, looked


def path_spec(spec: str) -> tuple[str, str] | None:
    """``(scheme, path)`` of a data set at a path (``folder:PATH``, ...), else None."""
    scheme, colon, path = spec.partition(":")
    return (scheme, path) if colon and scheme in SOURCES else None


def resolve_spec(spec: str) -> str:
    """``spec`` with its path made absolute (a relative path means nothing elsewhere); named
    data sets are returned as they are."""
    parts = path_spec(spec)
    if parts is None or not parts[1]:
        return spec
    return f"{parts[0]}:{Path(parts[1]).expanduser().resolve()}"


def locate(spec: str, data_dir: str | os.PathLike | None = None) -> str:
    """Where the data of a path ``spec`` are now: its path where that exists, else the same
    name inside ``data_dir`` (``--data-dir``: the folder the data were moved to), else
    ``spec`` unchanged (its loader then says what is missing)."""
    parts = path_spec(spec)
    if parts is None or not parts[1] or Path(parts[1]).expanduser().exists() or not data_dir:
        return spec
    scheme, path = parts
    root = Path(data_dir).expanduser()
    for candidate in (root / path, root / Path(path).name):
        if candidate.exists():
            return f"{scheme}:{candidate.resolve()}"
    return spec


def short_name(spec: str) -> str:
    """A short name of a data set that is safe in a file name (no ``:`` or ``/``): the data
    set's name, or the file or folder name of a path spec (``array:/x/y.npz`` -> ``y``)."""
    parts = path_spec(spec)
    name = Path(parts[1].rstrip("/")).stem if parts and parts[1] else spec.rpartition(":")[2]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"


def load(
    name: str, data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> Dataset:
    """Load a data set by name (one of ``DATASETS``) or at a path (``folder:PATH``,
    ``array:PATH``, ``celeba:PATH``; a path that is not there is looked for by its name in
    ``data_dir``); with ``image_size``, images are S x S (cropped to the centre square and
    resized)."""
    parts = path_spec(name)
    if parts is not None:
        if not parts[1]:
            raise DataError(f"--dataset {parts[0]}:PATH needs a path after the colon")
        scheme, path = path_spec(locate(name, data_dir))  # type: ignore[misc]
        loader = functools.partial(SOURCES.choose(scheme), path)
        dataset = require_data(construct(loader, image_size=image_size))
    else:  # a user's loader by import path takes data_dir and image_size only if it names them
        loader = DATASETS.choose(name)
        dataset = require_data(construct(loader, data_dir=data_dir, image_size=image_size))
    return dataset if image_size is None else resize(dataset, image_size)
