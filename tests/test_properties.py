"""Property tests (hypothesis) of the data layer's invariants."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_vae import data
from tests.conftest import write_idx


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_idx_round_trip(shape, gz, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / ("f.gz" if gz else "f"), array, gz=gz)
        assert np.array_equal(data.read_idx(path), array)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 64), dynamic=st.booleans())
def test_batches_partition_the_data(n, batch_size, dynamic):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1) / max(n, 1)
    parts = list(data.batches(x, batch_size, dynamic=dynamic))
    assert [len(b) for b in parts[:-1]] == [batch_size] * (len(parts) - 1)
    assert sum(len(b) for b in parts) == n
    if dynamic:
        assert all(set(b.unique().tolist()) <= {0.0, 1.0} for b in parts)
    else:
        assert torch.equal(torch.cat(parts).sort(0).values, x)
