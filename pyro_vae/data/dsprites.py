"""dSprites: DeepMind's file where found, else the library's re-rendering
(:mod:`pyro_vae.dsprites`)."""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .. import dsprites
from .cache import cached
from .dataset import Dataset
from .imagefiles import DataError
from .sources import DATASETS, search

DSPRITES_TEST = 10_000
DEEPMIND_URL = "https://github.com/deepmind/dsprites-dataset"
# DeepMind's file: every image of the factor grid, one row each, plus the colour factor (one
# value) first in latents_classes; a module constant so that tests can shrink the grid
DEEPMIND_IMAGES = dsprites.N_IMAGES
DEEPMIND_FIX = (
    "delete or rename it to train on the re-rendered dSprites, or fetch the .npz again from "
    + DEEPMIND_URL
)


def _unreadable(e: Exception, pickled: str) -> str:
    """Why numpy could not read the file, in a few words."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "pickle" in text.lower():
        return pickled
    if isinstance(e, EOFError) and text == "No data left in file":
        return "it is empty"
    return f"it could not be read as an .npz: truncated or damaged ({text})"


def read_deepmind(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """DeepMind's ``.npz``, checked: its images as uint8 (N, 1, 64, 64) of 0/255 and the factor
    indices (N, 5) (the constant colour dropped). Any other file of that name (another size,
    other keys, damaged, pickled) is refused in one line naming it and the fix."""

    def refuse(what: str) -> DataError:
        return DataError(f"{path} is not DeepMind's dSprites file: {what}; {DEEPMIND_FIX}")

    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise refuse(_unreadable(e, "it is a pickle (never unpickled here), not an .npz")) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise refuse("it holds a single .npy array, not an .npz with imgs and latents_classes")
    with loaded:
        missing = [k for k in ("imgs", "latents_classes") if k not in loaded.files]
        if missing:
            raise refuse(f"it has no {' or '.join(missing)} (it holds {sorted(loaded.files)})")
        try:
            imgs, classes = loaded["imgs"], loaded["latents_classes"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            why = _unreadable(e, "its arrays are pickled objects (never unpickled here)")
            raise refuse(why) from None
    n, side = DEEPMIND_IMAGES, dsprites.SIZE
    if imgs.shape != (n, side, side) or imgs.dtype != np.uint8:
        raise refuse(f"imgs is {imgs.dtype} {imgs.shape}, expected uint8 {(n, side, side)}")
    if classes.shape != (n, 1 + len(dsprites.SIZES)) or classes.dtype.kind not in "iu":
        raise refuse(
            f"latents_classes is {classes.dtype} {classes.shape}, expected integers "
            f"{(n, 1 + len(dsprites.SIZES))}"
        )
    if imgs.max(initial=0) > 1:
        raise refuse(f"imgs holds values up to {imgs.max()}, expected 0 and 1")
    factors = np.ascontiguousarray(classes[:, 1:], dtype=np.int64)
    if (classes[:, 0] != 0).any() or (factors < 0).any() or (factors >= dsprites.SIZES).any():
        raise refuse(f"latents_classes lies outside the factor grid {dsprites.SIZES}")
    return np.ascontiguousarray(imgs)[:, None] * np.uint8(255), factors


def load_dsprites(data_dir: str | os.PathLike | None = None) -> Dataset:
    """dSprites: 737,280 binary 64 x 64 sprites over five factors (:mod:`pyro_vae.dsprites`).
    DeepMind's ``.npz`` where found in the data folder, else the library's re-rendering of
    the same factor grid (built once into the image cache, then memory-mapped). Training uses
    every image, as the disentanglement literature does; the test split is a seeded 10,000 of
    them (so the test ELBO is not a held-out number). Factor indices are ``train_factors`` /
    ``test_factors``."""

    def find(folder: Path) -> Path | None:
        path = folder / dsprites.DEEPMIND_FILE
        return path if path.is_file() else None

    found, _ = search(data_dir, ["dsprites", "dsprites-dataset"], find)
    if found is not None:
        images, factors = read_deepmind(found)
        source = f"DeepMind's dSprites ({found})"
    else:

        def make() -> dict[str, np.ndarray]:
            images, factors = dsprites.generate()
            return {"images": images, "factors": factors}

        key = f"v2-r{dsprites.RADIUS:g}-c{dsprites.FIRST_CENTRE}"
        arrays = cached(key, make, "dsprites")
        images, factors = arrays["images"], arrays["factors"]
        source = "re-rendered by pyro_vae.dsprites (not DeepMind's file)"
    with warnings.catch_warnings():  # the cache is read-only on purpose: batches only read it
        warnings.simplefilter("ignore", UserWarning)
        x, f = torch.from_numpy(images), torch.from_numpy(np.asarray(factors))
    test = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:DSPRITES_TEST]
    test = test.sort().values
    return Dataset(
        "dsprites",
        x,
        x[test],
        (1, dsprites.SIZE, dsprites.SIZE),
        source,
        factor_names=dsprites.FACTOR_NAMES,
        train_factors=f,
        test_factors=f[test],
    )


DATASETS.register(
    "dsprites", load_dsprites, "dSprites, 737,280 of 64 x 64 over 5 factors (re-rendered)"
)
