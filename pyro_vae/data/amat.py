"""The fixed binarization of MNIST (Larochelle's ``binarized_mnist_*.amat`` files)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .dataset import Dataset, to_images
from .imagefiles import DataError
from .sources import DATASETS, ENV_VAR, find_file, search

AMAT_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}


def read_amat(path: Path, rows: int, cols: int = 784) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` file: one image per line, ``cols`` 0/1 values."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path} could not be read ({e}); delete it and fetch it again") from None
    line = 2 * cols  # "v v v ... v\n": one character and one separator per value
    chars = np.frombuffer(raw, np.uint8)
    if chars.size != rows * line:
        raise DataError(
            f"{path} holds {chars.size} bytes, expected {rows} lines of {cols} space-separated "
            f"0/1 values ({rows * line} bytes): the file is truncated or corrupt; fetch it again"
        )
    values = chars.reshape(rows, line)[:, ::2] - ord("0")
    if values.max() > 1:
        raise DataError(f"{path} holds values other than 0 and 1; fetch it again")
    return values


def load_binarized_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The fixed binarization of MNIST (Salakhutdinov & Murray 2008; Larochelle's files):
    50,000 train, 10,000 valid, 10,000 test, values in {0, 1}. No labels."""
    found, looked = search(data_dir, ["binarized_mnist", "binarized-mnist"], _load_amat_folder)
    if found is None:
        raise DataError(
            "binarized_mnist_{train,valid,test}.amat[.gz] not found; looked in: "
            f"{'; '.join(looked)}. Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    return found


def _load_amat_folder(folder: Path) -> Dataset | None:
    paths = {s: find_file(folder, f"binarized_mnist_{s}.amat") for s in AMAT_SPLITS}
    if not all(paths.values()):
        return None
    splits = {  # 0/1 values stored as 0/255, like every binarized set
        s: to_images((read_amat(p, AMAT_SPLITS[s]) * 255).astype(np.uint8).reshape(-1, 28, 28))  # type: ignore[arg-type]
        for s, p in paths.items()
    }
    return Dataset(
        name="binarized-mnist",
        train=splits["train"],
        test=splits["test"],
        valid=splits["valid"],
        image_shape=(28, 28),
        source=str(folder),
    )


DATASETS.register("binarized-mnist", load_binarized_mnist, "Larochelle's fixed binarization")
