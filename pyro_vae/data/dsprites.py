"""dSprites: DeepMind's file where found, else the library's re-rendering
(:mod:`pyro_vae.dsprites`)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import dsprites
from . import imagefiles
from .dataset import Dataset
from .sources import DATASETS, search

DSPRITES_TEST = 10_000


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
        with np.load(found, allow_pickle=False) as f:
            images = np.ascontiguousarray(f["imgs"], dtype=np.uint8)[:, None] * np.uint8(255)
            factors = np.ascontiguousarray(f["latents_classes"][:, 1:], dtype=np.int64)
        source = f"DeepMind's dSprites ({found})"
    else:

        def make() -> dict[str, np.ndarray]:
            images, factors = dsprites.generate()
            return {"images": images, "factors": factors}

        key = f"v2-r{dsprites.RADIUS:g}-c{dsprites.FIRST_CENTRE}"
        arrays = imagefiles.cached(key, make, "dsprites")
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
