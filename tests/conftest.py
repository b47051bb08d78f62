from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PYRO_VAE_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def needs_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set PYRO_VAE_SHARED_DATA)")
    return path


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    magic = 0x0800 + array.ndim  # unsigned bytes; 2051 for images, 2049 for labels
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return path


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A made-up MNIST folder of IDX gz files. The loader checks MNIST's real counts, so it
    holds 60000/10000 synthetic images: a bar whose height is the label, and a grey stroke."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("data") / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        rows = (labels * 2 + 4)[:, None]
        images[np.arange(n)[:, None], rows, np.arange(6, 22)[None, :]] = 255
        images[:, 10:18, 14] = 128
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def binary_batch() -> torch.Tensor:
    return torch.bernoulli(torch.full((32, 784), 0.2))
