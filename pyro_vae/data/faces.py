"""Face data sets: Frey faces (``frey_rawface.mat``) and the Olivetti faces
(``olivetti_faces.npz``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, to_images
from .files import load_array
from .imagefiles import DataError
from .sources import DATASETS, ENV_VAR, search

FREY_TEST = 200
FREY_URL = "https://cs.nyu.edu/~roweis/data.html"
OLIVETTI_FACES, OLIVETTI_PEOPLE = 400, 40


def load_frey_faces(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Brendan Frey's 1,965 face images of 28 x 20 grey levels (``frey_rawface.mat``, key
    ``ff``, as used by Kingma & Welling); a seeded split leaves 200 for testing. No labels."""

    def load(folder: Path) -> Dataset | None:
        path = folder / "frey_rawface.mat"
        return _read_frey(path) if path.is_file() else None

    found, looked = search(data_dir, ["frey_faces", "frey-faces"], load)
    if found is None:
        raise DataError(
            f"frey_rawface.mat not found; looked in: {'; '.join(looked)}. "
            f"Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    return found


def _read_frey(path: Path) -> Dataset:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading frey_rawface.mat needs scipy: pip install scipy") from None
    fix = f"fetch it again ({FREY_URL})"
    try:
        arrays = loadmat(path)
    except Exception as e:  # scipy raises many kinds of error on damaged bytes
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} could not be read as a MATLAB file ({why}); {fix}") from None
    if "ff" not in arrays:
        names = sorted(k for k in arrays if not k.startswith("__"))
        raise DataError(f"{path} holds no array 'ff' (it holds {names}); {fix}")
    faces = arrays["ff"]
    if faces.shape != (560, 1965) or faces.dtype != np.uint8:
        raise DataError(
            f"{path}: 'ff' is {faces.dtype} {faces.shape}, expected uint8 (560, 1965) (one "
            f"28 x 20 face per column); {fix}"
        )
    images = to_images(np.ascontiguousarray(faces.T).reshape(-1, 28, 20))
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return Dataset(
        name="frey-faces",
        train=images[perm[FREY_TEST:]],
        test=images[perm[:FREY_TEST]],
        image_shape=(28, 20),
        source=str(path),
    )


def load_olivetti(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The Olivetti faces (AT&T Cambridge): 400 grey 64 x 64 faces of 40 people
    (``olivetti_faces.npz`` with ``images`` and ``labels``, the person); a seeded split holds
    out 40, one per person."""

    def find(folder: Path) -> Path | None:
        path = folder / "olivetti_faces.npz"
        return path if path.is_file() else None

    found, looked = search(data_dir, ["olivetti"], find)
    if found is None:
        raise DataError(
            f"olivetti_faces.npz not found; looked in: {'; '.join(looked)}. "
            f"Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    ds = load_array(found)
    n = len(ds.train) + len(ds.test)
    classes = 0 if ds.train_labels is None else len(ds.train_labels.unique())
    if (n, ds.image_shape, classes) != (OLIVETTI_FACES, (1, 64, 64), OLIVETTI_PEOPLE):
        raise DataError(
            f"{found} is not the Olivetti faces file: it holds {n} images of {ds.image_shape} "
            f"(C, H, W) with {classes} labelled people, expected {OLIVETTI_FACES} grey 64 x 64 "
            f"faces of {OLIVETTI_PEOPLE} people ('images', 'labels'): fetch it again, or train "
            f"on it as --dataset array:{found}"
        )
    return replace(ds, name="olivetti")


DATASETS.register("frey-faces", load_frey_faces, "Frey faces, 1,965 of 28 x 20")
DATASETS.register("olivetti", load_olivetti, "Olivetti faces, 400 of 64 x 64, 40 people")
