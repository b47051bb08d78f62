"""Bad input, as an adversarial user gives it: options, data files, checkpoint files, resumes
and output folders. Each case must end in one line naming the problem (``pyro-vae: error:``
and exit status 1 on the command line, no traceback; the same ``ValueError`` text from the
Python API for options), and must leave everything on disk as it was."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from dataclasses import fields
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
        return path, "is empty, not a checkpoint: pass the checkpoint.pt"
    elif case == "truncated early":
        path.write_bytes(raw[:100])
    elif case == "truncated half":
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "truncated end":
        path.write_bytes(raw[:-10])
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
        return path, "is a file of unknown kind, not a checkpoint"
    elif case == "text file":
        path.write_text("model weights go here\n")
        return path, "is a text file, not a checkpoint"
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


# -- counts and outputs of the commands that apply a run: checked before any work ---------------

# (command and flags after the checkpoint, the message); the run folder must stay as it was
APPLY_CASES = [
    (["evaluate", "--samples", "-5"], r"--samples must be a whole number >= 0; got -5"),
    (["evaluate", "--test-size", "0"], r"--test-size must be a whole number >= 1; got 0"),
    (["evaluate", "--test-size", "-3"], r"--test-size must be a whole number >= 1; got -3"),
    (["encode", "--test-size", "0"], r"--test-size must be a whole number >= 1; got 0"),
    (["encode", "--test-size", "-2"], r"--test-size must be a whole number >= 1; got -2"),
    (["sample", "--n", "0"], r"--n must be a whole number >= 1; got 0"),
    (["sample", "--n", "-4"], r"--n must be a whole number >= 1; got -4"),
    (["sample", "--n", "100000000000"], r"100000000000 draws need .* GiB of memory.*fewer"),
    (["reconstruct", "--input", "test", "--n", "0"], r"--n must be a whole number >= 1; got 0"),
    (["reconstruct", "--input", "test", "--n", "-1"], r"--n must be a whole number >= 1"),
    (
        ["interpolate", "A", "B", "--steps", "0"],
        r"--steps must be a whole number from 1 to 1000; got 0",
    ),
    (["evaluate", "--json", "{afile}/x.json"], r"afile is a file, not a folder: give another"),
    (["evaluate", "--json", "{tmp}"], r"is a folder: give a file name"),
    (["encode", "--out", "{afile}/codes.npz"], r"afile is a file, not a folder"),
    (["encode", "--out", "{tmp}"], r"is a folder: give a file name in it"),
    (["sample", "--out", "{afile}"], r"--out .*afile is a file: give a folder"),
    (["sample", "--out", "{afile}/s.png"], r"afile is a file, not a folder"),
    (["reconstruct", "--input", "test", "--out", "{afile}"], r"afile is a file: give a folder"),
    (["decode", "--codes", "{afile}"], r"afile is not a .npz or .npy file: give the .npz"),
    (["decode", "--codes", "{run}/metrics.csv"], r"metrics.csv is not a .npz or .npy file"),
    (["decode", "--codes", "{tmp}/missing.npz"], r"missing.npz could not be read as .npz/.npy"),
    (["decode", "--codes", "{pickled}"], r"could not be read .*it holds Python objects"),
    (["decode", "--codes", "{wide}"], r"codes z have 7 dimensions; this model's z has 3"),
    (["decode", "--codes", "{empty}"], r"codes z are empty \(0 rows\)"),
    (["export", "--out", "{afile}"], r"afile is a file: give a folder"),
    (["interpolate", "{codes}:-1", "{codes}:0"], r"codes.npz: must be a whole number >= 0"),
    (["interpolate", "{codes}:x", "{codes}:0"], r"codes.npz: must be a whole number >= 0"),
    (["interpolate", "{codes}:99", "{codes}:0"], r"holds 2 rows of codes: row 99 is not among"),
]


@pytest.mark.parametrize("argv, message", APPLY_CASES, ids=lambda v: None)
def test_bad_counts_and_outputs_of_the_apply_commands(argv, message, good_run, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    np.save(tmp_path / "pickled.npy", np.array([{"z": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "wide.npy", np.zeros((2, 7), np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    np.savez(tmp_path / "codes.npz", z=np.zeros((2, 3), np.float32))
    names = {
        "afile": afile,
        "tmp": tmp_path,
        "run": good_run,
        "pickled": tmp_path / "pickled.npy",
        "wide": tmp_path / "wide.npy",
        "empty": tmp_path / "empty.npy",
        "codes": tmp_path / "codes.npz",
    }
    command, *flags = (a.format(**names) for a in argv)
    refused(capsys, [command, str(good_run / "checkpoint.pt"), *flags], message, good_run, tmp_path)


def test_evaluate_with_no_samples_says_it_skips_log_p(good_run, capsys, tmp_path):
    out = tmp_path / "new" / "deeper" / "numbers.json"
    argv = ["evaluate", str(good_run / "checkpoint.pt"), "--samples", "0", "--json", str(out)]
    assert cli.main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("(no log p(x): --samples 0)") and "log p(x) -" not in line
    assert "log_likelihood" not in out.read_text()  # the missing folders were made
    assert not list(out.parent.glob("*.tmp"))


# (what is given to the Python API, the message)
API_CASES = [
    (
        lambda run: run.encode(np.random.rand(3, 784) * 300),
        r"x holds floats from .* to .*binarizes intensities in \[0, 1\]",
    ),
    (
        lambda run: run.encode(-np.random.rand(3, 784)),
        r"this run binarizes intensities in \[0, 1\]",
    ),
    (lambda run: run.elbo(np.zeros((0, 784), np.float32)), r"x is empty \(0 data\)"),
    (lambda run: run.encode(torch.zeros(0, 1, 28, 28)), r"x is empty \(0 data\)"),
    (lambda run: run.log_likelihood(np.full((2, 784), 2.0), 3), r"x holds floats from 2 to 2"),
    (lambda run: run.log_likelihood(np.zeros((2, 784)), 0), r"samples must be a whole number >= 1"),
    (lambda run: run.log_likelihood(np.zeros((2, 784)), 2.5), r"samples must be a whole number"),
    (lambda run: run.sample(0), r"n must be a whole number >= 1; got 0"),
    (lambda run: run.sample(10**11), r"draws need .* GiB of memory"),
    (lambda run: run.decode(torch.zeros(0, 3)), r"codes z are empty"),
    (lambda run: run.decode(torch.zeros(2, 7)), r"codes z have 7 dimensions; this model's z has 3"),
    (lambda run: runs.evaluation(run, None, -1), r"samples must be a whole number >= 0"),
]


@pytest.mark.parametrize("call, message", API_CASES, ids=lambda v: None)
def test_bad_batches_and_counts_from_python_are_one_line(call, message, good_run):
    from pyro_vae import api

    run = api.load(good_run / "checkpoint.pt")
    with pytest.raises((ValueError, RuntimeError), match=message) as e:
        call(run)
    assert type(e.value).__name__ in ("ValueError", "DataError")


def test_other_float_types_and_integer_counts_from_python_work(good_run):
    from pyro_vae import api

    run = api.load(good_run / "checkpoint.pt")
    x = np.random.default_rng(0).random((4, 28, 28))  # float64, as NumPy gives it
    z64 = run.encode(x)
    z16 = run.encode(torch.as_tensor(x, dtype=torch.float16))
    assert z64.shape == z16.shape == (4, 3)
    assert torch.allclose(z64, z16, atol=0.05)
    assert run.sample(np.int64(3), seed=0).shape == (3, 1, 28, 28)
    assert run.log_likelihood(x, np.int32(2)).shape == (4,)


# every count option an experiment declares (options.Count) is refused as it is parsed, before
# any data are read or anything is trained
EXPERIMENT_COUNTS = [
    ("samples", "--n", "0", 1),
    ("samples", "--digits", "-1", 1),
    ("reconstructions", "--rows", "0", 1),
    ("manifold", "--grid", "0", 1),
    ("manifold", "--dims", "-1", 0),
    ("interpolation", "--steps", "0", 1),
    ("beta_vae", "--steps", "-2", 1),
    ("frey_faces", "--n", "0", 1),
    ("training_gif", "--frames", "0", 1),
    ("disentanglement", "--votes", "0", 1),
    ("disentanglement", "--seeds", "-1", 0),
    ("semi_supervised", "--budgets", "0", 1),
    ("classical_baselines", "--components", "0", 1),
    ("autoencoder_vs_vae", "--z-dims", "0", 1),
    ("conditional_vae", "--draws", "0", 1),
]


# the counts of a figure have a most too: past it a figure is unreadable (and could exhaust
# memory: 100,000 interpolation pairs)
EXPERIMENT_MOSTS = [
    ("interpolation", "--pairs", "100000", 100),
    ("interpolation", "--steps", "101", 100),
    ("samples", "--n", "1000", 100),
    ("manifold", "--grid", "500", 100),
    ("beta_vae", "--steps", "100000", 100),
    ("training_gif", "--frames", "1001", 1000),
    ("frey_faces", "--grid", "101", 100),
    ("reconstructions", "--rows", "101", 100),
]


# (experiment, flag, value, the bound the line states)
EXPERIMENT_BAD_COUNTS = [
    *((n, f, v, rf"(>= {least}|from {least} to \d+)") for n, f, v, least in EXPERIMENT_COUNTS),
    *((n, f, v, rf"from \d to {most}") for n, f, v, most in EXPERIMENT_MOSTS),
]


@pytest.mark.parametrize("name, flag, value, bound", EXPERIMENT_BAD_COUNTS)
def test_experiment_count_options_are_one_line(name, flag, value, bound, capsys, tmp_path):
    values = [value, "3"] if flag in ("--dims", "--seeds", "--budgets", "--z-dims") else [value]
    argv = ["run", name, flag, *values, "--out", str(tmp_path / "out")]
    refused(capsys, argv, rf"{flag} must be a whole number {bound}; got {value}$", tmp_path)
    assert not (tmp_path / "out").exists()


# counts an experiment can only check against the run: the z_dim, the test set, the classes
RUN_BOUNDS = [
    (
        ["manifold", "--dims", "0", "7"],
        r"--dims 0 7: give two different latent coordinates among "
        r"0\.\.2 \(z_dim is 3\)",
    ),
    (["manifold", "--dims", "1", "1"], r"--dims 1 1: give two different latent coordinates"),
    (["samples", "--digits", "40"], r"--digits 40: the test set holds 32: ask for fewer"),
    (
        ["attribute_vectors", "--classes", "4", "99"],
        r"--classes 4 99: no training datum has "
        r"class 99 \(the classes are 0\.\.\d\): give two of those",
    ),
]


@pytest.mark.parametrize("argv, message", RUN_BOUNDS, ids=lambda v: None)
def test_experiment_counts_checked_against_the_run(argv, message, good_run, capsys, tmp_path):
    name, *flags = argv
    argv = ["run", name, "--checkpoint", str(good_run / "checkpoint.pt"), *flags]
    refused(capsys, [*argv, "--out", str(tmp_path / "out")], message, good_run)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_manifold_dims_are_checked_before_training(capsys, tmp_path):
    argv = ["run", "manifold", "--dims", "0", "5", "--out", str(tmp_path / "out")]
    refused(
        capsys,
        argv,
        r"--dims 0 5: give two different latent coordinates among 0\.\.1 "
        r"\(z_dim is 2\)",
        tmp_path,
    )
    assert not (tmp_path / "out").exists()


def test_every_integer_option_of_the_commands_and_experiments_declares_its_least_value():
    """A new count option must come with its check: every int option is an options.Count,
    except --label (a class index, checked against the run's classes)."""
    from pyro_vae.options import Count

    parsers = [p for p in cli.parser()._subparsers._group_actions[0].choices.values()]
    for name in cli.experiment_names():
        module = cli.load_experiment(name)
        captured = {}
        real = module.experiment.parse

        def grab(p, argv, _captured=captured, **smoke):
            _captured["p"] = p
            raise SystemExit(0)

        module.experiment.parse = grab
        try:
            with pytest.raises(SystemExit):
                module.main([])
        finally:
            module.experiment.parse = real
        parsers.append(captured["p"])
    checked_by_configs = {f.name for cls in (ModelConfig, TrainConfig) for f in fields(cls)}
    plain = [
        f"{p.prog} {a.option_strings[0]}"
        for p in parsers
        for a in p._actions
        if a.type is int and not isinstance(a, Count)
        if a.dest != "label" and a.dest not in checked_by_configs
    ]
    assert len(parsers) > 20 and not plain, plain


def test_a_model_too_large_for_memory_is_one_line(capsys, tmp_path, tiny_mnist_dir, monkeypatch):
    """A layer is checked before it is allocated: 784 x 500 weights with their gradients and
    Adam's moments (6 MB) do not fit in the 1 MB made available here."""
    from pyro_vae import nets

    monkeypatch.setattr(nets, "available_memory", lambda: 10**6)
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--train-size", "64", "--test-size", "16"]
    argv += ["--out", str(tmp_path / "run"), "--no-progress"]
    refused(
        capsys,
        argv,
        r"a layer of 784 x 500 weights needs 0\.0 GiB of memory with its gradients and Adam's "
        r"moments, and 0\.0 GiB are available: use a smaller --image-size, narrower --hidden",
        tiny_mnist_dir,
    )
    assert not (tmp_path / "run").exists()


def test_a_failed_allocation_while_building_is_one_line(monkeypatch):
    from pyro_vae import kinds

    def build(self, config):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate "
            "162000000000 bytes. Error code 12"
        )

    monkeypatch.setattr(type(kinds.kind_of("vae")), "build", build)
    config = ModelConfig(image_shape=(1, 9000, 9000), x_dim=81_000_000)
    with pytest.raises(
        ValueError,
        match=r"the model for 1 x 9000 x 9000 images does not fit in "
        r"memory \(one of its layers needs 150\.9 GiB\): use a smaller",
    ):
        kinds.build_in_memory(kinds.kind_of("vae"), config)


def test_a_users_loader_without_parameters_is_called_without_them(tmp_path, monkeypatch):
    """An import-path loader (``--dataset mymodule:load``) gets data_dir and image_size only
    where its signature names them."""
    (tmp_path / "myloader.py").write_text(
        "import torch\n"
        "from pyro_vae.data import Dataset\n"
        "def load():\n"
        "    x = torch.arange(40 * 16).reshape(40, 16).remainder(2).to(torch.uint8) * 255\n"
        "    return Dataset('mine', x[:30], x[30:], (1, 4, 4), 'made up')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from pyro_vae import data

    dataset = data.load("myloader:load", data_dir=tmp_path)
    assert dataset.name == "mine" and tuple(dataset.train.shape) == (30, 16)


# the other files of a run folder, passed where the checkpoint belongs, are named for what they are
FOREIGN_FILES = [
    ("metrics.csv", r"is a CSV table \(metrics\.csv\?\), not a checkpoint"),
    ("evaluation.json", r"is a JSON file, not a checkpoint"),
    ("config.toml", r"is a text file, not a checkpoint"),
    ("curves.png", r"is a PNG image, not a checkpoint"),
    ("codes.npz", r"is a zip archive of z\.npy, .* \(an \.npz\?\), not a checkpoint"),
    ("codes.npy", r"is a NumPy \.npy array, not a checkpoint"),
    ("gz", r"is a gzip file, not a checkpoint"),
]


@pytest.mark.parametrize("name, message", FOREIGN_FILES)
def test_a_run_folders_other_files_are_not_taken_for_a_checkpoint(
    name, message, good_run, capsys, tmp_path
):
    if name == "codes.npz":
        np.savez(tmp_path / name, z=np.zeros((2, 3)), z_loc=np.zeros((2, 3)))
        path = tmp_path / name
    elif name == "codes.npy":
        np.save(tmp_path / name, np.zeros((2, 3)))
        path = tmp_path / name
    elif name == "gz":
        path = tmp_path / "checkpoint.pt.gz"
        path.write_bytes(gzip.compress((good_run / "checkpoint.pt").read_bytes()))
    else:
        path = good_run / name
    refused(capsys, ["evaluate", str(path)], message, good_run, tmp_path)
