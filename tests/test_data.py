"""The data layer: IDX/amat parsing and checks, where files are looked for, binarization."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from pyro_vae import data
from tests.conftest import needs_shared, write_idx


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    monkeypatch.setattr(data.idx, "_torchvision_download", lambda spec, root: (None, "no download"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)


MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_read_idx_plain_and_gz(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        path = write_idx(tmp_path / f"x-images{'.gz' if gz else ''}", images, gz=gz)
        assert np.array_equal(data.read_idx(path), images)
    labels = np.array([3, 1, 4], np.uint8)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "y", labels, gz=False)), labels)


def test_truncated_and_foreign_idx_files_are_named(tmp_path):
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28)), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte holds 3926 bytes.*truncated"):
        data.read_idx(path)
    gz = tmp_path / "a.gz"
    gz.write_bytes(gzip.compress(b"\x00" * 5000)[:-20])
    with pytest.raises(data.DataError, match=r"a\.gz could not be read.*truncated or corrupt"):
        data.read_idx(gz)
    foreign = tmp_path / "b"
    foreign.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(foreign)


def test_mnist_from_data_dir_env_var_and_torchvision_layout(tiny_mnist_dir, tmp_path, monkeypatch):
    ds = data.load_mnist(tiny_mnist_dir)
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert ds.train.dtype == torch.uint8 and ds.train.max() == 255  # stored as uint8 levels
    x = data.as_input(ds.train[:5])  # what models read: float rows in [0, 1]
    assert x.shape == (5, 784) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert ds.train_labels.shape == (60000,) and ds.image_shape == (1, 28, 28)
    # $PYRO_VAE_DATA/<name>
    monkeypatch.setenv(data.ENV_VAR, str(tiny_mnist_dir.parent))
    assert data.load_mnist().source == str(tiny_mnist_dir)
    # torchvision's <root>/MNIST/raw layout, uncompressed files
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in tiny_mnist_dir.iterdir():
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    monkeypatch.delenv(data.ENV_VAR)
    assert data.load_mnist(tmp_path / "tv").source == str(raw)


def test_wrong_counts_are_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((7, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(7))
    with pytest.raises(data.DataError, match=r"train split has images \(7, 28, 28\)"):
        data.load_mnist(folder)


def test_mnist_ships_with_the_package(tmp_path, capsys, monkeypatch):
    ds = data.load_mnist()  # no folder given: the packaged copy, the real data set
    assert ds.source == str(data.PACKAGED_MNIST)
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert ds.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(ds.test_labels).tolist() == MNIST_TEST_COUNTS
    # $PYRO_VAE_DATA without the files: said, and the packaged copy is used
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    assert data.load_mnist().source == str(data.PACKAGED_MNIST)
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in err and "shipped with" in err
    # an explicit data_dir without them: an error naming the files, never another data set
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.*leave out --data-dir"):
        data.load_mnist(tmp_path / "nowhere")
    monkeypatch.delenv(data.ENV_VAR)
    monkeypatch.setattr(data.idx, "PACKAGED_MNIST", tmp_path / "gone")
    with pytest.raises(data.DataError) as e:
        data.load_mnist()
    assert "--data-dir" in str(e.value) and "\n" not in str(e.value)


def test_missing_fashion_mnist_points_to_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()


def test_fashion_mnist_from_debian_package():
    if not data.DEBIAN_FASHION_MNIST.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    ds = data.load_fashion_mnist()
    assert ds.train.shape == (60000, 1, 28, 28) and ds.name == "fashion-mnist"
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10


def test_real_shared_mnist():
    folder = needs_shared("mnist")
    ds = data.load_mnist(folder)
    assert torch.bincount(ds.test_labels).tolist() == MNIST_TEST_COUNTS
    assert ds.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_read_amat_and_its_errors(tmp_path):
    rows = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
    text = "".join(" ".join(map(str, r)) + "\n" for r in rows).encode()
    path = tmp_path / "x.amat.gz"
    path.write_bytes(gzip.compress(text))
    assert np.array_equal(data.read_amat(path, 2, 4), rows)
    path.write_bytes(gzip.compress(text[:-3]))
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.read_amat(path, 2, 4)
    path.write_bytes(gzip.compress(text.replace(b"1", b"7")))
    with pytest.raises(data.DataError, match="other than 0 and 1"):
        data.read_amat(path, 2, 4)


def test_binarized_mnist_missing_and_real(tmp_path):
    with pytest.raises(data.DataError, match=r"binarized_mnist_\{train,valid,test\}"):
        data.load_binarized_mnist(tmp_path)
    ds = data.load_binarized_mnist(needs_shared("binarized_mnist"))
    assert ds.train.shape == (50000, 1, 28, 28) and ds.valid.shape == (10000, 1, 28, 28)
    assert ds.is_binary and abs(data.as_input(ds.test).mean().item() - 0.13251) < 1e-4


def test_binarization_schemes():
    grey = torch.rand(200, 10)
    ds = data.Dataset("t", grey, grey[:50].clone(), (2, 5), "made up")
    dynamic = data.prepare(ds, "dynamic", seed=3)
    assert torch.equal(dynamic.train, grey) and dynamic.test.unique().tolist() == [0.0, 1.0]
    fixed = data.prepare(ds, "fixed", seed=3)
    assert fixed.is_binary and torch.equal(fixed.test, dynamic.test)
    assert torch.equal(fixed.train, data.prepare(ds, "fixed", seed=3).train)
    assert not torch.equal(fixed.train, data.prepare(ds, "fixed", seed=4).train)
    assert data.prepare(ds, "none") is ds
    with pytest.raises(ValueError, match="choose one of"):
        data.prepare(ds, "otsu")
    # uint8 levels binarize to uint8 0/255, the same draws as their float equivalent
    levels = torch.randint(0, 256, (200, 1, 2, 5), dtype=torch.uint8)
    ds8 = data.Dataset("t8", levels, levels[:50].clone(), (2, 5), "made up")
    fixed8 = data.prepare(ds8, "fixed", seed=3)
    assert fixed8.train.dtype == torch.uint8 and fixed8.is_binary
    assert set(fixed8.test.unique().tolist()) <= {0, 255}
    as_float = data.Dataset("t", data.as_input(levels), data.as_input(levels[:50]), (2, 5), "f")
    assert torch.equal(
        data.as_input(fixed8.test), data.prepare(as_float, "fixed", seed=3).test.reshape(50, -1)
    )


def test_batches_cover_a_permutation_and_binarize_dynamically():
    x = torch.arange(10.0).unsqueeze(1).repeat(1, 3)
    seen = torch.cat(list(data.batches(x, 4)))
    assert sorted(seen[:, 0].tolist()) == list(range(10))
    assert [len(b) for b in data.batches(x, 4)] == [4, 4, 2]
    grey = torch.full((9, 3), 0.5)
    assert all(set(b.unique().tolist()) <= {0.0, 1.0} for b in data.batches(grey, 4, dynamic=True))
    # stored uint8 images come out as float rows in [0, 1]
    images = torch.full((9, 1, 2, 2), 255, dtype=torch.uint8)
    batch = next(data.batches(images, 4))
    assert batch.shape == (4, 4) and batch.dtype == torch.float32 and (batch == 1).all()


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'; choose one of"):
        data.load("cifar")
