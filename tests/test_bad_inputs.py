"""Bad input, as an adversarial user gives it: options, data files, checkpoint files, resumes
and output folders. Each case must end in one line naming the problem (``pyro-vae: error:``
and exit status 1 on the command line, no traceback; the same ``ValueError`` text from the
Python API for options), and must leave everything on disk as it was."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import checkpoint, cli
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from tests.conftest import write_idx


def snapshot(*folders: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folders``: size, modification time and a digest of its bytes."""
    files = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")) if Path(folder).exists() else []:
            if path.is_file():
                st = path.stat()
                files[str(path)] = (st.st_size, st.st_mtime_ns, path.read_bytes()[-4096:])
    return files


def refused(capsys, argv: list[str], match: str, *untouched: Path) -> str:
    """Run the CLI in-process: exit status 1, one line on stderr matching ``match``, and the
    files under ``untouched`` unchanged."""
    before = snapshot(*untouched)
    capsys.readouterr()
    status = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("pyro-vae: error: "), err
    assert "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]
    assert snapshot(*untouched) == before
    return lines[0]


# -- options: the CLI and the Python API refuse the same values with the same line ----------

# (flag values, config field values, the message)
OPTIONS = [
    (["--epochs", "0"], {"epochs": 0}, "epochs must be at least 1"),
    (["--epochs", "-3"], {"epochs": -3}, "epochs must be at least 1"),
    (["--batch-size", "0"], {"batch_size": 0}, "batch_size must be at least 1"),
    (["--batch-size", "-5"], {"batch_size": -5}, "batch_size must be at least 1"),
    (["--particles", "0"], {"num_particles": 0}, "num_particles must be at least 1"),
    (["--lr", "0"], {"lr": 0.0}, r"lr must lie in \(0, 1\]"),
    (["--lr", "-0.001"], {"lr": -0.001}, r"lr must lie in \(0, 1\]"),
    (["--lr", "1e6"], {"lr": 1e6}, r"lr must lie in \(0, 1\]"),
    (["--lr", "nan"], {"lr": float("nan")}, r"lr must lie in \(0, 1\]"),
    (["--lr", "inf"], {"lr": float("inf")}, r"lr must lie in \(0, 1\]"),
    (["--beta", "-1"], {"beta": -1.0}, "beta must be a finite number >= 0"),
    (["--beta", "nan"], {"beta": float("nan")}, "beta must be a finite number >= 0"),
    (["--beta", "inf"], {"beta": float("inf")}, "beta must be a finite number >= 0"),
    (["--warmup-epochs", "-1"], {"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
    (["--ll-samples", "-1"], {"ll_samples": -1}, "ll_samples must be >= 0"),
    (["--seed", "-1"], {"seed": -1}, "seed must be >= 0"),
    (["--labels", "-1"], {"labels": -1}, "labels must be >= 0"),
    (["--labelled-repeats", "-1"], {"labelled_repeats": -1}, "labelled_repeats must be >= 0"),
    (["--train-size", "0"], {"train_size": 0}, "train_size must be at least 1"),
    (["--train-size", "-10"], {"train_size": -10}, "train_size must be at least 1"),
    (["--test-size", "0"], {"test_size": 0}, "test_size must be at least 1"),
    (["--test-size", "-1"], {"test_size": -1}, "test_size must be at least 1"),
    (["--image-size", "1"], {"image_size": 1}, "image_size must be at least 2"),
    (["--image-size", "0"], {"image_size": 0}, "image_size must be at least 2"),
    (["--data-memory", "-1"], {"data_memory": -1.0}, "data_memory must be a finite number"),
    (["--data-memory", "nan"], {"data_memory": float("nan")}, "data_memory must be a finite"),
    (["--adam-betas", "1", "0.999"], {"adam_betas": (1.0, 0.999)}, "adam_betas must lie in"),
    (["--adam-betas", "-0.1", "0.9"], {"adam_betas": (-0.1, 0.9)}, "adam_betas must lie in"),
    (["--adam-betas", "nan", "0.9"], {"adam_betas": (float("nan"), 0.9)}, "adam_betas must"),
    (["--elbo", "elbo2"], {"elbo": "elbo2"}, "unknown ELBO 'elbo2'"),
    (["--binarize", "otsu"], {"binarize": "otsu"}, "unknown binarization 'otsu'"),
    (["--z-dim", "0"], {"z_dim": 0}, "z_dim must be at least 1"),
    (["--z-dim", "-2"], {"z_dim": -2}, "z_dim must be at least 1"),
    (["--z1-dim", "0"], {"z1_dim": 0}, "z1_dim must be at least 1"),
    (["--hidden", "0"], {"hidden": (0,)}, "hidden widths must be at least 1"),
    (["--hidden", "64", "-1"], {"hidden": (64, -1)}, "hidden widths must be at least 1"),
    (["--top-hidden", "0"], {"top_hidden": (0,)}, "hidden widths must be at least 1"),
    (["--prior-components", "0"], {"prior_components": 0}, "prior_components must be at least"),
    (["--aux-weight", "-1"], {"aux_weight": -1.0}, "aux_weight must be a finite number"),
    (["--aux-weight", "nan"], {"aux_weight": float("nan")}, "aux_weight must be a finite"),
    (["--model", "gan"], {"model": "gan"}, "unknown model kind 'gan'"),
    (["--prior", "cauchyish"], {"prior": "cauchyish"}, "unknown prior 'cauchyish'"),
    (["--likelihood", "poisson"], {"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
    (["--guide", "psychic"], {"guide": "psychic"}, "guide 'psychic'"),
    (["--activation", "swish2"], {"activation": "swish2"}, "activation"),
    (["--net", "transformer"], {"net": "transformer"}, "net"),
    (["--prior", "no_such_pkg.priors:MoG"], {"prior": "no_such_pkg.priors:MoG"}, "no_such_pkg"),
    (["--likelihood", "pyro_vae.priors:Nope"], {"likelihood": "pyro_vae.priors:Nope"}, "Nope"),
]


def _config(fields: dict) -> None:
    model_fields = {k: v for k, v in fields.items() if k in ModelConfig.__dataclass_fields__}
    ModelConfig(**model_fields)
    TrainConfig(**{k: v for k, v in fields.items() if k not in model_fields})


@pytest.mark.parametrize("flags, fields, message", OPTIONS, ids=lambda v: None)
def test_bad_option_values_are_one_line_on_the_cli(flags, fields, message, capsys, tmp_path):
    out = tmp_path / "run"
    line = refused(capsys, ["train", *flags, "--out", str(out)], message, tmp_path)
    assert not out.exists()
    with pytest.raises(ValueError) as err:
        _config(fields)
    assert str(err.value).splitlines()[0] == line.removeprefix("pyro-vae: error: ")


# -- data: sets and files that cannot be trained on ------------------------------------------


def _image(path: Path, size=(8, 8), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)
    return path


def _bad_data(root: Path, case: str) -> tuple[list[str], str]:
    """Make the bad data for ``case`` under ``root``: the train options and the message."""
    folder = root / case
    if case == "missing folder":
        return ["--dataset", f"folder:{folder}"], "is not a folder"
    folder.mkdir(parents=True)
    if case == "empty folder":
        return ["--dataset", f"folder:{folder}"], "holds nothing"
    if case == "no images":
        (folder / "notes.txt").write_text("hello")
        return ["--dataset", f"folder:{folder}"], "no image"
    if case == "corrupt image":
        for i in range(4):
            _image(folder / f"{i}.png")
        (folder / "bad.png").write_bytes(b"\x89PNG not really")
        return ["--dataset", f"folder:{folder}"], "bad.png"
    if case == "mixed sizes":
        for i in range(4):
            _image(folder / f"{i}.png", size=(8, 8))
        _image(folder / "big.png", size=(9, 12))
        return ["--dataset", f"folder:{folder}"], "image-size"
    if case == "loose images beside classes":
        for i in range(3):
            _image(folder / "cat" / f"{i}.png")
        _image(folder / "stray.png")
        return ["--dataset", f"folder:{folder}"], "stray.png|class"
    if case == "array wrong dtype":
        np.save(folder / "x.npy", np.zeros((10, 8, 8), np.int64) + 3)
        return ["--dataset", f"array:{folder / 'x.npy'}"], "x.npy"
    if case == "array wrong rank":
        np.save(folder / "x.npy", np.zeros((10, 8), np.uint8))
        return ["--dataset", f"array:{folder / 'x.npy'}"], "x.npy"
    if case == "array floats out of range":
        np.save(folder / "x.npy", np.full((10, 8, 8), 3.0, np.float32))
        return ["--dataset", f"array:{folder / 'x.npy'}"], "x.npy"
    if case == "array not numpy":
        (folder / "x.npy").write_bytes(b"not an array")
        return ["--dataset", f"array:{folder / 'x.npy'}"], "x.npy"
    if case == "npz without images":
        np.savez(folder / "x.npz", something=np.zeros(3))
        return ["--dataset", f"array:{folder / 'x.npz'}"], "x.npz"
    if case in ("a label of 255", "a negative label", "a test label beyond the classes"):
        y_train, y_test = np.arange(40) % 10, np.arange(20) % 10
        if case == "a label of 255":
            y_train[3], message = 255, "245 of the classes 0..255 have no data"
        elif case == "a negative label":
            y_test[0], message = -1, "labels must be >= 0"
        else:
            y_test[0], message = 10, r"a test label .* \(10\) is no training class"
        images = np.zeros((40, 8, 8), np.uint8), np.zeros((20, 8, 8), np.uint8)
        np.savez(
            folder / "x.npz", x_train=images[0], y_train=y_train, x_test=images[1], y_test=y_test
        )
        return ["--dataset", f"array:{folder / 'x.npz'}", "--model", "cvae"], message
    if case == "missing array":
        return ["--dataset", f"array:{folder / 'none.npy'}"], "none.npy"
    if case == "celeba attributes name missing images":
        images = folder / "img_align_celeba"
        for i in range(1, 4):
            _image(images / f"{i:06d}.jpg", size=(20, 24))
        rows = [f"{i:06d}.jpg 1 -1" for i in range(1, 6)]
        (folder / "list_attr_celeba.txt").write_text("5\nSmiling Eyeglasses\n" + "\n".join(rows))
        return ["--dataset", f"celeba:{folder}"], "000004.jpg|missing"
    if case == "celeba malformed attribute row":
        images = folder / "img_align_celeba"
        for i in range(1, 4):
            _image(images / f"{i:06d}.jpg", size=(20, 24))
        rows = ["000001.jpg 1 -1", "000002.jpg 1", "000003.jpg -1 1"]
        (folder / "list_attr_celeba.txt").write_text("3\nSmiling Eyeglasses\n" + "\n".join(rows))
        return ["--dataset", f"celeba:{folder}"], "list_attr_celeba.txt"
    if case in ("truncated idx", "20 x 20 idx as mnist", "idx files missing"):
        side = 20 if case == "20 x 20 idx as mnist" else 28
        for prefix, n in (("train", 60000), ("t10k", 10000)):
            write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, side, side)))
            write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(n))
        train = folder / "train-images-idx3-ubyte.gz"
        if case == "truncated idx":
            train.write_bytes(gzip.compress(gzip.decompress(train.read_bytes())[:5000]))
            return ["--dataset", "mnist", "--data-dir", str(folder)], "train-images.*truncated"
        if case == "idx files missing":
            (folder / "t10k-labels-idx1-ubyte.gz").unlink()
            return ["--dataset", "mnist", "--data-dir", str(folder)], "not found.*--data-dir"
        return ["--dataset", "mnist", "--data-dir", str(folder)], r"expected \(60000, 28, 28\)"
    if case == "unknown dataset":
        return ["--dataset", "imagenet"], "unknown data set 'imagenet'|imagenet"
    if case == "unknown source":
        return ["--dataset", f"hdf5:{folder}"], "hdf5"
    raise AssertionError(case)


DATA_CASES = [
    "missing folder",
    "empty folder",
    "no images",
    "corrupt image",
    "mixed sizes",
    "loose images beside classes",
    "array wrong dtype",
    "array wrong rank",
    "array floats out of range",
    "array not numpy",
    "npz without images",
    "missing array",
    "a label of 255",
    "a negative label",
    "a test label beyond the classes",
    "celeba attributes name missing images",
    "celeba malformed attribute row",
    "truncated idx",
    "20 x 20 idx as mnist",
    "idx files missing",
    "unknown dataset",
    "unknown source",
]


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line_and_the_data_folder_is_untouched(case, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))
    data_root = tmp_path / "data"
    flags, message = _bad_data(data_root, case)
    out = tmp_path / "run"
    argv = ["train", *flags, "--net", "mlp", "--epochs", "1", "--out", str(out), "--no-progress"]
    refused(capsys, argv, message, data_root)
    assert not (out / "checkpoint.pt").exists()


def test_grey_levels_into_a_bernoulli_likelihood(capsys, tmp_path, tiny_mnist_dir):
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--binarize", "none", "--out"]
    refused(capsys, [*argv, str(tmp_path / "r")], "needs 0/1 data", tiny_mnist_dir)


# -- checkpoint files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tiny_mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "run"
    config = TrainConfig(
        data_dir=str(tiny_mnist_dir), train_size=128, test_size=32, epochs=1, ll_samples=0
    )
    runs.train(ModelConfig(z_dim=3, hidden=(16,)), config, out, progress=False)
    return out


class _Hostile:
    """Unpickled, it would create the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoint(good: Path, folder: Path, case: str) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpoint.pt"
    raw = good.read_bytes()
    if case == "missing":
        return folder / "nothing.pt", "no checkpoint at"
    if case == "a folder":
        (folder / "dir.pt").mkdir()
        return folder / "dir.pt", "no checkpoint at"
    if case == "empty file":
        path.write_bytes(b"")
    elif case == "truncated early":
        path.write_bytes(raw[:100])
    elif case == "truncated half":
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "truncated end":
        path.write_bytes(raw[:-10])
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif case == "text file":
        path.write_text("model weights go here\n")
    elif case == "foreign torch file":
        torch.save({"state_dict": {"w": torch.ones(2)}}, path)
        return path, "not a 'pyro-vae checkpoint v1' file"
    elif case == "a tensor":
        torch.save(torch.ones(3), path)
        return path, "not a 'pyro-vae checkpoint v1' file"
    elif case == "hostile pickle":
        torch.save({"format": checkpoint.FORMAT, "x": _Hostile(folder / "ran")}, path)
        return path, "refused to load.*pickled objects"
    elif case == "hostile raw pickle":
        path.write_bytes(pickle.dumps({"format": checkpoint.FORMAT, "x": _Hostile(folder / "ran")}))
    elif case == "non-finite weights":
        payload = checkpoint.load(good)
        key = next(iter(payload["trainer"]["modules"]))
        payload["trainer"]["modules"][key] = payload["trainer"]["modules"][key] * float("nan")
        del payload["checksum"]
        torch.save(payload, path)
        return path, "NaN or inf"
    elif case == "edited weights":
        payload = checkpoint.load(good)
        key = next(iter(payload["trainer"]["modules"]))
        payload["trainer"]["modules"][key] = -payload["trainer"]["modules"][key]
        torch.save(payload, path)
        return path, "fails its checksum"
    else:
        raise AssertionError(case)
    return path, "not a readable checkpoint"


CHECKPOINT_CASES = [
    "missing",
    "a folder",
    "empty file",
    "truncated early",
    "truncated half",
    "truncated end",
    "random bytes",
    "text file",
    "foreign torch file",
    "a tensor",
    "hostile pickle",
    "hostile raw pickle",
    "non-finite weights",
    "edited weights",
]


@pytest.mark.parametrize("command", ["evaluate", "sample", "encode"])
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_files_are_one_line(case, command, good_run, capsys, tmp_path):
    path, message = _bad_checkpoint(good_run / "checkpoint.pt", tmp_path / "c", case)
    out = tmp_path / "out.x"
    refused(
        capsys,
        [command, str(path), "--out", str(out)] if command != "evaluate" else [command, str(path)],
        message,
        tmp_path / "c",
        good_run,
    )
    assert not out.exists()
    assert not (tmp_path / "c" / "ran").exists()  # no pickled code ever runs


@pytest.mark.parametrize("case", ["truncated half", "hostile pickle", "edited weights"])
def test_bad_checkpoint_on_resume_is_one_line(case, good_run, capsys, tmp_path):
    path, message = _bad_checkpoint(good_run / "checkpoint.pt", tmp_path / "c", case)
    refused(capsys, ["train", "--resume", "--out", str(path.parent)], message, tmp_path / "c")


# -- resuming with other options, and output folders ------------------------------------


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--z-dim", "7"], "z_dim"),
        (["--hidden", "32"], "hidden"),
        (["--batch-size", "64"], "batch_size"),
        (["--seed", "3"], "seed"),
        (["--likelihood", "cbernoulli"], "likelihood"),
        (["--dataset", "fashion-mnist"], "dataset"),
        (["--elbo", "iwae"], "elbo"),
        (["--beta", "4"], "beta"),
        (["--train-size", "64"], "train_size"),
    ],
)
def test_resume_refuses_changed_options(flags, field, good_run, capsys, tmp_path):
    line = refused(
        capsys,
        ["train", "--resume", "--out", str(good_run), *flags],
        rf"--resume: the run in .* was trained with other options: {field} ",
        good_run,
    )
    assert "only epochs, lr" in line


def test_resume_without_out_and_without_a_checkpoint(capsys, tmp_path):
    refused(capsys, ["train", "--resume"], "--resume continues the run in --out")
    (tmp_path / "empty").mkdir()
    refused(capsys, ["train", "--resume", "--out", str(tmp_path / "empty")], "no checkpoint at")


def test_an_out_folder_with_other_files_is_refused(capsys, tmp_path, tiny_mnist_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--out", str(out)]
    refused(capsys, argv, "holds files but no checkpoint.*thesis.tex", out)


def test_an_out_folder_that_cannot_be_written(capsys, tmp_path, tiny_mnist_dir):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--out", str(blocker / "run")]
    refused(capsys, argv, "cannot write into .*choose a writable --out", tmp_path)


def test_a_full_disk_is_one_line_before_training(capsys, tmp_path, tiny_mnist_dir, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--out", str(tmp_path / "run")]
    refused(capsys, argv, "cannot write into .*No space left on device")
    assert list((tmp_path / "run").iterdir()) == []  # the probe is gone, nothing else written


# -- the data a model or a guide is called with ----------------------------------------------

PAIRS = {
    "vae/normal": ModelConfig(z_dim=2, hidden=(8,), x_dim=12),
    "vae/iaf": ModelConfig(z_dim=2, hidden=(8,), x_dim=12, guide="iaf"),
    "vae/fullcov": ModelConfig(z_dim=2, hidden=(8,), x_dim=12, guide="fullcov"),
    "hvae/bottom-up": ModelConfig(
        model="hvae", z_dim=2, z1_dim=3, hidden=(8,), top_hidden=(8,), x_dim=12
    ),
    "hvae/ladder": ModelConfig(
        model="hvae", guide="ladder", z_dim=2, z1_dim=3, hidden=(8,), top_hidden=(8,), x_dim=12
    ),
}
BAD_ROWS = [
    (torch.rand(4, 11), r"shape \(batch, 12\); got \(4, 11\)"),
    (torch.rand(4, 3, 4), r"shape \(batch, 12\); got \(4, 3, 4\)"),
    (torch.rand(12), r"shape \(batch, 12\); got \(12,\)"),
    (np.zeros((4, 12), np.float32), r"got ndarray"),
    (torch.ones(4, 12, dtype=torch.uint8), "float tensor; got torch.uint8"),
    (torch.ones(4, 12, dtype=torch.int64), "float tensor; got torch.int64"),
    (torch.rand(0, 12), "empty batch"),
    (torch.full((4, 12), float("nan")), "NaN or inf"),
    (torch.full((4, 12), float("inf")), "NaN or inf"),
]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("x, message", BAD_ROWS, ids=lambda v: None)
def test_models_and_guides_check_their_data_before_any_network_runs(pair, x, message):
    from pyro_vae.kinds import build

    model, guide = build(PAIRS[pair])
    for who in (model, guide):
        with pytest.raises(ValueError, match=message):
            who(x)
