"""The fixed binarization of MNIST (Larochelle's ``binarized_mnist_*.amat`` files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import Dataset, to_images
from .idx import read_bytes
from .imagefiles import DataError
from .sources import DATASETS, ENV_VAR, find_file, search

AMAT_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}


def read_amat(path: Path, rows: int, cols: int = 784) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` file (gzipped or not): one image per line, ``cols``
    values 0/1 separated by white space. A file of another count of lines or values, or other
    values, is refused in one line naming the first bad line."""
    raw = read_bytes(path)
    if not raw:
        raise DataError(f"{path} is empty (0 bytes, after gunzip): delete it and fetch it again")
    digits = raw.translate(None, b" \t\r\v\f")  # each line: cols digits and a newline
    ended = digits.endswith(b"\n")  # else the last line (whole or cut short) lacks one
    digits += b"" if ended else b"\n"
    chars = np.frombuffer(digits, np.uint8)
    if chars.size == rows * (cols + 1):
        grid = chars.reshape(rows, cols + 1)
        values = grid[:, :cols] - np.uint8(ord("0"))  # other characters wrap to large values
        if (grid[:, cols] == ord("\n")).all() and values.max(initial=0) <= 1:
            return values
    raise DataError(_amat_problem(path, digits, rows, cols, ended))


def _amat_problem(path: Path, digits: bytes, rows: int, cols: int, ended: bool) -> str:
    """Why the white-space-free text ``digits`` of ``path`` (one newline added at the end
    where the file lacked it: not ``ended``) is not ``rows`` lines of ``cols`` 0/1 digits."""
    fix = "fetch it again"
    lines = digits.split(b"\n")[:-1]
    for i, line in enumerate(lines, start=1):
        if i == len(lines) and not ended and len(line) < cols:
            return f"{path} ends inside line {i} of {rows}: truncated or corrupt; {fix}"
        other = line.translate(None, b"01")
        if other:
            return f"{path}, line {i}: values other than 0 and 1 ({other[:1]!r} among them); {fix}"
        if len(line) != cols:
            return f"{path}, line {i}: {len(line)} values, expected {cols}; {fix}"
    return (
        f"{path} holds {len(lines)} lines of {cols} values, expected {rows}: the file is "
        f"truncated or corrupt; {fix}"
    )


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
