"""Bad files for the named data sources: CelebA's attribute and partition files, DeepMind's
dSprites file, MNIST's IDX files, binarized MNIST's ``.amat`` files, Frey and Olivetti faces,
and sources that give an empty split. Each ends in one line naming the file, what is wrong and
what to do (``pyro-vae: error:``, exit status 1, no traceback), and leaves the data folder as it
was; the near misses that are not wrong (an uncompressed file named ``.gz``, Windows line
endings, a partition without a test split) load correctly. Every file is a tiny fake."""

from __future__ import annotations

import gzip
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import cli, data, dsprites
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from tests.conftest import write_idx
from tests.test_bad_inputs import refused, snapshot

TRAIN = ["--net", "mlp", "--epochs", "1", "--ll-samples", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)


def train_refused(capsys, tmp_path: Path, flags: list[str], match: str, data_root: Path) -> str:
    """``pyro-vae train`` with ``flags`` is refused in one line matching ``match``; nothing
    under ``data_root`` changes and no checkpoint is written."""
    out = tmp_path / "run"
    line = refused(capsys, ["train", *flags, *TRAIN, "--out", str(out)], match, data_root)
    assert not (out / "checkpoint.pt").exists()
    return line


# -- CelebA: the attribute and partition files checked against each other and the images ----

NAMES = ("Smiling", "Eyeglasses")


def _celeba(root: Path, n: int = 6) -> Path:
    """A folder in CelebA's layout: ``n`` tiny JPEGs, their attributes (CRLF, as CelebA's)."""
    (root / "img_align_celeba").mkdir(parents=True)
    for i in range(1, n + 1):
        Image.new("RGB", (10, 12), (20 * i, 100, 200)).save(root / "img_align_celeba" / _jpg(i))
    rows = [
        f"{_jpg(i)} " + " ".join("1" if (i + k) % 2 else "-1" for k in range(2))
        for i in range(1, n + 1)
    ]
    _attributes(root, [str(n), " ".join(NAMES), *rows])
    return root


def _jpg(i: int) -> str:
    return f"{i:06d}.jpg"


def _attributes(root: Path, lines: list[str]) -> None:
    (root / "list_attr_celeba.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())


def _lines(root: Path) -> list[str]:
    return (root / "list_attr_celeba.txt").read_text().splitlines()


def _partition(root: Path, splits: dict[int, int | str]) -> None:
    text = "\n".join(f"{_jpg(i)} {k}" for i, k in splits.items()) + "\n"
    (root / "list_eval_partition.txt").write_text(text)


def _edit(root: Path, line: int, text: str) -> None:
    lines = _lines(root)
    lines[line - 1] = text
    _attributes(root, lines)


CELEBA_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    # the count line says 9, six rows follow: a file cut short is not half-read
    "attribute file cut short": (
        lambda r: _edit(r, 1, "9"),
        r"list_attr_celeba\.txt is cut short: 6 image rows found, 9 expected .*fetch it again",
    ),
    "more rows than the count line": (
        lambda r: _edit(r, 1, "4"),
        r"list_attr_celeba\.txt holds more rows than it says: 6 image rows found, 4 expected",
    ),
    "no count line": (
        lambda r: _attributes(r, _lines(r)[1:]),
        r"list_attr_celeba\.txt, line 1: expected the number of images, got 'Smiling Eyeglasses'",
    ),
    "an attribute named twice": (
        lambda r: _edit(r, 2, "Smiling Smiling"),
        r"list_attr_celeba\.txt, line 2 names Smiling twice",
    ),
    "a row cut inside": (
        lambda r: _edit(r, 8, _jpg(6) + " 1"),
        r"line 8: expected a file name and 2 values of -1 or 1 .*got 2 fields",
    ),
    "more values than names": (
        lambda r: _attributes(r, [*_lines(r)[:2], *(x + " 1" for x in _lines(r)[2:])]),
        r"line 3: expected a file name and 2 values of -1 or 1 \(one per name on line 2\); got 4",
    ),
    "0 for -1": (
        lambda r: _edit(r, 4, _jpg(2) + " 1 0"),
        r"line 4: .*Eyeglasses of 000002\.jpg is '0': fix or replace the file",
    ),
    "an image listed twice": (
        lambda r: _edit(r, 5, _jpg(1) + " 1 1"),
        r"line 5: 000001\.jpg is listed again \(first on line 3\): remove one",
    ),
    "only the count line": (
        lambda r: _attributes(r, ["6"]),
        r"list_attr_celeba\.txt has 1 line\(s\): CelebA's layout is a count line",
    ),
    "no image rows": (
        lambda r: _attributes(r, ["0", " ".join(NAMES)]),
        r"list_attr_celeba\.txt lists no images",
    ),
    "a path for a file name": (
        lambda r: _edit(r, 3, "../000001.jpg 1 1"),
        r"line 3: '\.\./000001\.jpg' is not a file name in img_align_celeba/",
    ),
    "every image gone": (
        lambda r: [p.unlink() for p in (r / "img_align_celeba").iterdir()],
        r"lists 6 images missing from .*img_align_celeba \(first: 000001\.jpg\)",
    ),
    "every image in the test split": (
        lambda r: _partition(r, dict.fromkeys(range(1, 7), 2)),
        r"list_eval_partition\.txt puts none of the 6 images into the training split \(0; 0 valid"
        r", 6 test\): fix the file, or delete it for a seeded split",
    ),
    "every image in the validation split": (
        lambda r: _partition(r, dict.fromkeys(range(1, 7), 1)),
        r"list_eval_partition\.txt puts none of the 6 images into the training split \(0; 6 valid",
    ),
    "one training image and no test split": (
        lambda r: _partition(r, {i: 0 if i == 1 else 1 for i in range(1, 7)}),
        r"list_eval_partition\.txt puts no image into the test split \(2\) and 1 into the "
        r"training split \(0\): give each at least one",
    ),
    "an image without a partition": (
        lambda r: _partition(r, {i: 0 if i < 4 else 2 for i in range(1, 6)}),
        r"list_eval_partition\.txt has no row for 1 of the 6 images .*\(first: 000006\.jpg\)",
    ),
    "a partition of 3": (
        lambda r: _partition(r, {1: 0, 2: 3, 3: 0, 4: 2, 5: 2, 6: 2}),
        r"list_eval_partition\.txt, line 2: expected a file name and 0 \(train\), 1 \(valid\) "
        r"or 2 \(test\), got '000002\.jpg 3'",
    ),
}


@pytest.mark.parametrize("case", CELEBA_CASES)
def test_bad_celeba_files_are_one_line(case, capsys, tmp_path):
    root = _celeba(tmp_path / "celeba")
    make, match = CELEBA_CASES[case]
    make(root)
    flags = ["--dataset", f"celeba:{root}", "--image-size", "8"]
    train_refused(capsys, tmp_path, flags, match, root)
    # refused before any image was decoded: nothing left in the image cache
    assert not list((tmp_path / "cache").glob("celeba-*"))


def test_a_partition_listing_an_image_twice(capsys, tmp_path):
    root = _celeba(tmp_path / "celeba")
    _partition(root, dict.fromkeys(range(1, 7), 0))
    with (root / "list_eval_partition.txt").open("a") as f:
        f.write(f"{_jpg(3)} 2\n")
    flags = ["--dataset", f"celeba:{root}", "--image-size", "8"]
    train_refused(capsys, tmp_path, flags, r"line 7: 000003\.jpg is listed again", root)


def test_a_damaged_celeba_image_is_named(capsys, tmp_path):
    root = _celeba(tmp_path / "celeba")
    (root / "img_align_celeba" / _jpg(3)).write_bytes(b"\xff\xd8 not a JPEG")
    flags = ["--dataset", f"celeba:{root}", "--image-size", "8"]
    train_refused(capsys, tmp_path, flags, r"000003\.jpg", root)


def test_a_partition_without_a_test_split_holds_out_training_images(capsys, tmp_path):
    """CelebA's first images all lie in its training partition: a seeded hold-out of them is
    the test set (a note says so), the validation rows stay validation data."""
    root = _celeba(tmp_path / "celeba", n=10)
    _partition(root, {i: 1 if i > 8 else 0 for i in range(1, 11)})
    capsys.readouterr()
    ds = data.load(f"celeba:{root}", image_size=8)
    err = capsys.readouterr().err
    assert "note: " in err and "none of these 10 images into the test split" in err
    assert (len(ds.train), len(ds.test), len(ds.valid)) == (4, 4, 2)
    again = data.load(f"celeba:{root}", image_size=8)
    assert torch.equal(again.test, ds.test)  # seeded
    assert len(ds.train_attributes) == 4 and len(ds.test_attributes) == 4


def test_a_partition_of_the_whole_of_celeba_with_a_subset_of_its_images(tmp_path):
    """CelebA's own partition file names 202,599 images; a folder holding its first few (the
    attribute file cut to them, its count line too) uses the rows it needs."""
    root = _celeba(tmp_path / "celeba")
    _partition(root, {i: 0 if i < 5 else 2 for i in range(1, 40)})
    ds = data.load(f"celeba:{root}", image_size=8)
    assert (len(ds.train), len(ds.test), ds.valid) == (4, 2, None)


def test_evaluate_refuses_a_celeba_attribute_file_cut_after_training(capsys, tmp_path):
    root = _celeba(tmp_path / "celeba")
    out = tmp_path / "run"
    argv = ["train", "--dataset", f"celeba:{root}", "--image-size", "8", *TRAIN, "--out", str(out)]
    argv += ["--step", "eager", "--z-dim", "2", "--hidden", "8"]
    assert cli.main(argv) == 0
    _attributes(root, _lines(root)[:-2])  # two rows lost: the count line says 6
    match = r"list_attr_celeba\.txt is cut short: 4 image rows found, 6 expected"
    refused(capsys, ["evaluate", str(out / "checkpoint.pt"), "--samples", "0"], match, root, out)


# -- dSprites: a file of DeepMind's name is DeepMind's file, or is refused --------------------


def _npz(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of DeepMind's layout (0/1 uint8) and their latents_classes (colour first)."""
    rows = np.stack(np.unravel_index(np.arange(n) * 997, dsprites.SIZES), axis=1)
    classes = np.concatenate([np.zeros((n, 1), np.int64), rows], axis=1)
    return (dsprites.images_for(rows)[:, 0] > 0).astype(np.uint8), classes


def _good(path: Path) -> None:
    imgs, classes = _grid(3)
    _npz(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))


def _npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # a .npy under an .npz's name
        np.save(f, array)


def _write_bytes(data: bytes) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(data)


DSPRITES_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "500 images": (
        lambda p: _npz(p, imgs=np.zeros((500, 64, 64), np.uint8), latents_classes=_grid(500)[1]),
        r"imgs is uint8 \(500, 64, 64\), expected uint8 \(3, 64, 64\)",
    ),
    "no imgs": (
        lambda p: _npz(p, latents_classes=_grid(3)[1]),
        r"it has no imgs \(it holds \['latents_classes'\]\)",
    ),
    "no latents_classes": (
        lambda p: _npz(p, imgs=_grid(3)[0]),
        r"it has no latents_classes \(it holds \['imgs'\]\)",
    ),
    "images as floats": (
        lambda p: _npz(p, imgs=_grid(3)[0].astype(np.float32), latents_classes=_grid(3)[1]),
        r"imgs is float32 \(3, 64, 64\), expected uint8",
    ),
    "images as 0/255": (
        lambda p: _npz(p, imgs=_grid(3)[0] * 255, latents_classes=_grid(3)[1]),
        r"imgs holds values up to 255, expected 0 and 1",
    ),
    "factors outside the grid": (
        lambda p: _npz(p, imgs=_grid(3)[0], latents_classes=_grid(3)[1] + 40),
        r"latents_classes lies outside the factor grid \(3, 6, 40, 32, 32\)",
    ),
    "factors without the colour column": (
        lambda p: _npz(p, imgs=_grid(3)[0], latents_classes=_grid(3)[1][:, 1:]),
        r"latents_classes is int64 \(3, 5\), expected integers \(3, 6\)",
    ),
    "pickled object arrays": (
        lambda p: _npz(p, imgs=np.array([object()] * 3, dtype=object), latents_classes=_grid(3)[1]),
        r"its arrays are pickled objects \(never unpickled here\)",
    ),
    "a pickle": (
        lambda p: p.write_bytes(pickle.dumps({"imgs": [1, 2, 3]})),
        r"it is a pickle \(never unpickled here\), not an \.npz",
    ),
    "a truncated file": (
        lambda p: (_good(p), p.write_bytes(p.read_bytes()[:5000])),
        r"it could not be read as an \.npz: truncated or damaged",
    ),
    "an empty file": (_write_bytes(b""), r"it is empty"),
    "a single .npy array": (
        lambda p: _npy(p, _grid(3)[0]),
        r"it holds a single \.npy array, not an \.npz",
    ),
}


@pytest.mark.parametrize("case", DSPRITES_CASES)
def test_a_wrong_file_of_deepminds_name_is_refused(case, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data.dsprites, "DEEPMIND_IMAGES", 3)  # DeepMind's file, shrunk
    folder = tmp_path / "dsprites"
    folder.mkdir()
    make, match = DSPRITES_CASES[case]
    make(folder / dsprites.DEEPMIND_FILE)
    flags = ["--dataset", "dsprites", "--data-dir", str(tmp_path)]
    line = train_refused(capsys, tmp_path, flags, match, folder)
    assert f"{folder / dsprites.DEEPMIND_FILE} is not DeepMind's dSprites file: " in line
    assert line.endswith(
        "delete or rename it to train on the re-rendered dSprites, or fetch "
        "the .npz again from https://github.com/deepmind/dsprites-dataset"
    )
    assert not (tmp_path / "cache").exists()  # the re-rendering was not built in its place


def test_the_real_size_is_asked_of_deepminds_file(tmp_path):
    folder = tmp_path / "dsprites"
    folder.mkdir()
    _good(folder / dsprites.DEEPMIND_FILE)
    with pytest.raises(
        data.DataError,
        match=r"imgs is uint8 \(3, 64, 64\), expected uint8 "
        r"\(737280, 64, 64\)",
    ):
        data.load_dsprites(tmp_path)


def test_deepminds_layout_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(data.dsprites, "DEEPMIND_IMAGES", 3)
    folder = tmp_path / "dsprites"
    folder.mkdir()
    _good(folder / dsprites.DEEPMIND_FILE)
    ds = data.load_dsprites(tmp_path)
    imgs, classes = _grid(3)
    assert ds.train.shape == (3, 1, 64, 64) and set(ds.train.unique().tolist()) == {0, 255}
    assert torch.equal(ds.train[:, 0] > 0, torch.from_numpy(imgs > 0))
    assert torch.equal(ds.train_factors, torch.from_numpy(classes[:, 1:]))


# -- IDX files (MNIST, Fashion-MNIST) ---------------------------------------------------------

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _flip_middle(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))


def _swap(a: Path, b: Path) -> None:
    first = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(first)


IDX_CASES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "zero bytes": (TRAIN_IMAGES, _write_bytes(b""), r"train-images-idx3-ubyte\.gz is empty"),
    "gzip of nothing": (TEST_LABELS, _write_bytes(gzip.compress(b"")), r"t10k-labels.* is empty"),
    "an HTML page": (
        TRAIN_IMAGES,
        _write_bytes(b"<html><body>404 Not Found</body></html>"),
        r"train-images-idx3-ubyte\.gz is not an IDX file of unsigned bytes .*it starts b'<html>",
    ),
    "floats, not bytes": (
        TEST_IMAGES,
        _write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12),
        r"t10k-images-idx3-ubyte\.gz is not an IDX file of unsigned bytes \(magic number 3331",
    ),
    "damaged gzip": (
        TRAIN_IMAGES,
        _flip_middle,
        r"train-images-idx3-ubyte\.gz could not be read .*truncated or corrupt; delete it",
    ),
    "gzip cut short": (
        TRAIN_LABELS,
        lambda p: p.write_bytes(p.read_bytes()[:500]),
        r"train-labels-idx1-ubyte\.gz could not be read \(Compressed file ended",
    ),
    "header cut short": (
        TEST_IMAGES,
        _write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00")),
        r"t10k-images-idx3-ubyte\.gz holds 6 bytes, less than its 16-byte header",
    ),
    "bytes after the data": (
        TRAIN_LABELS,
        lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()) + b"xx")),
        r"train-labels-idx1-ubyte\.gz holds 60010 bytes but its header \(\(60000,\)\) needs 60008",
    ),
    "a label short": (
        TRAIN_LABELS,
        lambda p: write_idx(p, np.zeros(59999)),
        r"train-labels-idx1-ubyte\.gz: mnist's train split has labels \(59999,\), expected "
        r"\(60000,\): replace it with the original file",
    ),
    "images and labels swapped": (
        TEST_IMAGES,
        lambda p: _swap(p, p.with_name(TEST_LABELS)),
        r"t10k-images-idx3-ubyte\.gz: mnist's test split has images \(10000,\), expected \(1",
    ),
    "a channel axis": (
        TEST_IMAGES,
        lambda p: write_idx(p, np.zeros((10000, 28, 28, 1))),
        r"t10k-images-idx3-ubyte\.gz: mnist's test split has images \(10000, 28, 28, 1\)",
    ),
    "a label of 255": (
        TEST_LABELS,
        lambda p: write_idx(p, np.full(10000, 255)),
        r"t10k-labels-idx1-ubyte\.gz holds labels up to 255; mnist's are 0\.\.9",
    ),
}


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_files_are_one_line(case, capsys, tmp_path, tiny_mnist_dir):
    folder = tmp_path / "mnist"
    shutil.copytree(tiny_mnist_dir, folder)
    name, make, match = IDX_CASES[case]
    make(folder / name)
    flags = ["--dataset", "mnist", "--data-dir", str(folder)]
    train_refused(capsys, tmp_path, flags, match, folder)


def test_fashion_mnist_files_are_checked_as_mnists_are(capsys, tmp_path, tiny_mnist_dir):
    folder = tmp_path / "fashion-mnist"
    shutil.copytree(tiny_mnist_dir, folder)
    write_idx(folder / TRAIN_LABELS, np.full(60000, 10))
    flags = ["--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]
    match = r"fashion-mnist/train-labels-idx1-ubyte\.gz holds labels up to 10; fashion-mnist's"
    train_refused(capsys, tmp_path, flags, match, folder)


def test_an_uncompressed_idx_file_named_gz_is_read(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    plain = write_idx(tmp_path / "x-idx3-ubyte.gz", images, gz=False)
    packed = write_idx(tmp_path / "y-idx3-ubyte.gz", images)
    assert np.array_equal(data.read_idx(plain), images)
    assert np.array_equal(data.read_idx(packed), images)


# -- binarized MNIST's .amat files ------------------------------------------------------------

AMAT_ROWS = {"train": 4, "valid": 2, "test": 2}


def _amat_text(rows: int, seed: int = 0, sep: str = " ", end: str = "\n") -> str:
    values = np.random.default_rng(seed).integers(0, 2, (rows, 784))
    return "".join(sep.join(str(v) for v in row) + end for row in values)


@pytest.fixture
def amat_dir(tmp_path, monkeypatch) -> Path:
    """A binarized-MNIST folder of 4 / 2 / 2 images (the loader's counts shrunk to match)."""
    monkeypatch.setattr(data.amat, "AMAT_SPLITS", AMAT_ROWS)
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for split, rows in AMAT_ROWS.items():
        path = folder / f"binarized_mnist_{split}.amat.gz"
        path.write_bytes(gzip.compress(_amat_text(rows).encode()))
    return folder


def _rewrite(text: str) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(gzip.compress(text.encode()))


def _amat_edit(edit: Callable[[str], str]) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(
        gzip.compress(edit(gzip.decompress(p.read_bytes()).decode()).encode())
    )


AMAT_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "zero bytes": (_write_bytes(b""), r"binarized_mnist_train\.amat\.gz is empty"),
    "damaged gzip": (_flip_middle, r"binarized_mnist_train\.amat\.gz could not be read"),
    "cut inside a line": (
        _amat_edit(lambda t: t[: len(t) // 2 + 101]),
        r"binarized_mnist_train\.amat\.gz ends inside line 3 of 4: truncated or corrupt; fetch it "
        r"again",
    ),
    "a line short": (
        _rewrite(_amat_text(3)),
        r"binarized_mnist_train\.amat\.gz holds 3 lines of 784 values, expected 4: the file is",
    ),
    "a line too many": (
        _rewrite(_amat_text(5)),
        r"holds 5 lines of 784 values, expected 4: the file is truncated or corrupt; fetch it",
    ),
    "a value of 2": (
        _amat_edit(lambda t: "2" + t[1:]),
        r"binarized_mnist_train\.amat\.gz, line 1: values other than 0 and 1 \(b'2' among them\)",
    ),
    "commas": (
        _rewrite(_amat_text(4, sep=",")),
        r"line 1: values other than 0 and 1 \(b',' among them\)",
    ),
    "grey levels as floats": (
        _amat_edit(lambda t: t.replace("1", "0.5")),
        r"line 1: values other than 0 and 1 \(b'\.' among them\)",
    ),
    "a value missing": (
        _amat_edit(
            lambda t: "\n".join(x[2:] if i == 1 else x for i, x in enumerate(t.split("\n")))
        ),
        r"binarized_mnist_train\.amat\.gz, line 2: 783 values, expected 784",
    ),
}


@pytest.mark.parametrize("case", AMAT_CASES)
def test_bad_amat_files_are_one_line(case, capsys, tmp_path, amat_dir):
    make, match = AMAT_CASES[case]
    make(amat_dir / "binarized_mnist_train.amat.gz")
    flags = ["--dataset", "binarized-mnist", "--data-dir", str(tmp_path)]
    train_refused(capsys, tmp_path, flags, match, amat_dir)


@pytest.mark.parametrize("sep, end, last", [(" ", "\r\n", ""), ("\t", " \n", ""), (" ", "\n", "!")])
def test_amat_white_space_variants_read_the_same(sep, end, last, tmp_path):
    """Windows line endings, tabs, trailing spaces, and a last line without its newline."""
    want = data.read_amat(_plain(tmp_path / "a.amat", _amat_text(3)), 3)
    text = _amat_text(3, sep=sep, end=end)
    if last:
        text = text.rstrip("\n")
    assert np.array_equal(data.read_amat(_plain(tmp_path / "b.amat", text), 3), want)
    assert want.shape == (3, 784) and set(np.unique(want)) == {0, 1}


def _plain(path: Path, text: str) -> Path:
    path.write_text(text, newline="")
    return path


# -- Frey and Olivetti faces ------------------------------------------------------------------


def _frey(folder: Path, **arrays: np.ndarray) -> None:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / "frey_rawface.mat", arrays)


def _frey_good(folder: Path) -> None:
    _frey(folder, ff=np.random.default_rng(0).integers(0, 256, (560, 1965), dtype=np.uint8))


FREY_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "zero bytes": (
        lambda f: (f.mkdir(), (f / "frey_rawface.mat").write_bytes(b"")),
        r"frey_rawface\.mat could not be read as a MATLAB file \(Mat file appears to be truncated",
    ),
    "a text file": (
        lambda f: (f.mkdir(), (f / "frey_rawface.mat").write_text("ff = faces\n")),
        r"frey_rawface\.mat could not be read as a MATLAB file",
    ),
    "cut short": (
        lambda f: (
            _frey_good(f),
            (f / "frey_rawface.mat").write_bytes((f / "frey_rawface.mat").read_bytes()[:300_000]),
        ),
        r"frey_rawface\.mat could not be read as a MATLAB file",
    ),
    "no ff": (
        lambda f: _frey(f, faces=np.zeros((560, 1965), np.uint8)),
        r"frey_rawface\.mat holds no array 'ff' \(it holds \['faces'\]\); fetch it again",
    ),
    "ff as doubles": (
        lambda f: _frey(f, ff=np.zeros((560, 1965))),
        r"'ff' is float64 \(560, 1965\), expected uint8 \(560, 1965\) \(one 28 x 20 face per",
    ),
    "ff transposed": (
        lambda f: _frey(f, ff=np.zeros((1965, 560), np.uint8)),
        r"'ff' is uint8 \(1965, 560\), expected uint8 \(560, 1965\)",
    ),
}


@pytest.mark.parametrize("case", FREY_CASES)
def test_bad_frey_files_are_one_line(case, capsys, tmp_path):
    folder = tmp_path / "frey_faces"
    make, match = FREY_CASES[case]
    make(folder)
    line = train_refused(
        capsys, tmp_path, ["--dataset", "frey-faces", "--data-dir", str(tmp_path)], match, folder
    )
    assert "https://cs.nyu.edu/~roweis/data.html" in line


def _olivetti(folder: Path, n: int = 400, labels: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"images": np.random.default_rng(0).integers(0, 243, (n, 64, 64), dtype=np.uint8)}
    if labels:
        arrays["labels"] = (np.arange(n) // 10).astype(np.uint8)
    np.savez(folder / "olivetti_faces.npz", **arrays)


@pytest.mark.parametrize(
    "n, labels, match",
    [(400, False, "400 images of .* with 0 labelled people"), (40, True, "40 images of .* with 4")],
)
def test_a_file_of_olivettis_name_that_is_not_it(n, labels, match, capsys, tmp_path):
    folder = tmp_path / "olivetti"
    _olivetti(folder, n, labels)
    match = r"olivetti_faces\.npz is not the Olivetti faces file: it holds " + match
    line = train_refused(
        capsys, tmp_path, ["--dataset", "olivetti", "--data-dir", str(tmp_path)], match, folder
    )
    assert line.endswith(f"or train on it as --dataset array:{folder / 'olivetti_faces.npz'}")


def test_the_olivetti_layout_loads(tmp_path):
    _olivetti(tmp_path / "olivetti")
    ds = data.load("olivetti", tmp_path)
    assert (len(ds.train), len(ds.test)) == (360, 40)
    assert sorted(ds.test_labels.tolist()) == list(range(40))


# -- empty splits: refused by the data layer, not by the likelihood later ----------------------

LOADERS = """
import torch
from pyro_vae.data import Dataset

x = torch.full((6, 1, 4, 4), 100, dtype=torch.uint8)  # grey levels: binarized for Bernoulli


def no_train(data_dir=None):
    return Dataset("mine", x[:0], x, (1, 4, 4), "my_loaders.no_train")


def no_test(data_dir=None):
    return Dataset("mine", x, x[:0], (1, 4, 4), "my_loaders.no_test")


def a_tensor(data_dir=None):
    return x
"""


@pytest.mark.parametrize(
    "loader, match",
    [
        ("no_train", r"mine has no training images \(from my_loaders\.no_train\): check"),
        ("no_test", r"mine has no test images \(from my_loaders\.no_test\)"),
        ("a_tensor", r"the data set's loader returned Tensor, not a pyro_vae\.data\.Dataset"),
    ],
)
def test_a_loader_with_an_empty_split(loader, match, capsys, tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_loaders.py").write_text(LOADERS)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delitem(sys.modules, "my_loaders", raising=False)
    line = train_refused(capsys, tmp_path, ["--dataset", f"my_loaders:{loader}"], match, code)
    assert "outside the support" not in line


def test_a_dataset_object_without_training_data(tmp_path):
    x = torch.full((6, 1, 4, 4), 100, dtype=torch.uint8)
    empty = data.Dataset("given", x[:0], x, (1, 4, 4), "made up")
    before = snapshot(tmp_path)
    with pytest.raises(data.DataError, match=r"given has no training images \(from made up\)"):
        runs.build(ModelConfig(), TrainConfig(), empty)
    assert snapshot(tmp_path) == before
