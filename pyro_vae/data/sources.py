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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ..registry import Registry, construct
from .dataset import Dataset, resize
from .imagefiles import DataError

T = TypeVar("T")

ENV_VAR = "PYRO_VAE_DATA"
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


def load(
    name: str, data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> Dataset:
    """Load a data set by name (one of ``DATASETS``) or at a path (``folder:PATH``,
    ``array:PATH``, ``celeba:PATH``); with ``image_size``, images are S x S (cropped to the
    centre square and resized)."""
    scheme, colon, path = name.partition(":")
    if scheme in SOURCES.names() and colon:
        if not path:
            raise DataError(f"--dataset {scheme}:PATH needs a path after the colon")
        loader = functools.partial(SOURCES.choose(scheme), path)
    else:
        loader = functools.partial(DATASETS.choose(name), data_dir)
    dataset = construct(loader, image_size=image_size)
    return dataset if image_size is None else resize(dataset, image_size)
