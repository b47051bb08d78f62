"""Config files: ``pyro-vae train --config FILE`` and ``--print-config``, the run folder's
``config.toml`` (training from it reproduces the run bit for bit), and one-line errors for bad
files."""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import pytest
import torch

from pyro_vae import checkpoint, cli, configfile, options
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.options import configs_from_args
from tests.test_bad_inputs import refused  # one line, exit 1, files unchanged

# tiny runs: the MNIST shipped with the package, 200 / 50 data, one epoch
TINY = [
    "--dataset", "mnist", "--train-size", "200", "--test-size", "50", "--z-dim", "2",
    "--hidden", "16", "--epochs", "1", "--ll-samples", "5", "--device", "cpu", "--no-progress",
]  # fmt: skip


def non_default_configs(tmp_path: Path) -> tuple[ModelConfig, TrainConfig]:
    """Every kind of value a file holds: floats that need all their digits, a tiny and a huge
    number, empty and one-element lists, a string with quotes, backslash, control characters
    and non-ASCII letters."""
    model = ModelConfig(
        model="hvae", guide="ladder", z_dim=3, z1_dim=5, hidden=(), top_hidden=(7,),
        aux_weight=0.1 + 0.2, residual=True, activation="tanh", prior="mog", prior_components=3,
    )  # fmt: skip
    train = TrainConfig(
        dataset=f'folder:{tmp_path}/ünï "q" \\ \t\x01\x7f dir', data_dir=str(tmp_path),
        lr=1e-5, adam_betas=(0.5, 1 / 3), beta=1 / 3, data_memory=5e-324,
        dist_timeout=0.1 + 0.2, train_size=200, labels=0, image_size=2, seed=2**40,
        step="eager", binarize="fixed", device="cpu", ll_samples=0, elbo="iwae",
        num_particles=3, capacity=1e300,
    )  # fmt: skip
    return model, train


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def parse(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(["train", *argv])


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
@pytest.mark.parametrize("which", ["default", "non-default"])
def test_dumps_reads_back_as_equal_configs(fmt, which, tmp_path):
    if fmt == "yaml":
        pytest.importorskip("yaml")
    configs = (
        (ModelConfig(), TrainConfig()) if which == "default" else non_default_configs(tmp_path)
    )
    text = configfile.dumps(*configs, format=fmt)
    path = write(tmp_path / f"c.{fmt}", text)
    assert configfile.configs_from_file(path) == configs
    # and again: what it reads, it writes the same
    assert configfile.dumps(*configfile.configs_from_file(path), format=fmt) == text


def test_dumps_writes_every_option_with_its_help_and_nothing_set_from_the_data():
    text = configfile.dumps(ModelConfig(), TrainConfig())
    for cls in (ModelConfig, TrainConfig):
        for name, (f, _) in configfile.cli_fields(cls).items():
            assert re.search(rf"^# {name}: not set$|^{name} = ", text, re.M), name
            first_words = " ".join(f.metadata["help"].split()[:3])
            assert first_words in " ".join(text.split()), name
    for name in ("x_dim", "image_shape", "num_classes"):
        assert name not in text
    assert "\n# data_dir: not set\n" in text  # None: TOML has no null


def test_read_gives_the_fields_types(tmp_path):
    path = write(tmp_path / "c.toml", "[model]\nhidden = [8, 4]\n[train]\ncapacity = 25\n")
    values = configfile.read(path)
    assert values == {"model": {"hidden": (8, 4)}, "train": {"capacity": 25.0}}
    assert isinstance(values["train"]["capacity"], float)
    assert configfile.read(write(tmp_path / "e.toml", "")) == {"model": {}, "train": {}}


def test_yaml_reads_floats_pyyaml_takes_for_strings(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path / "c.yml", "model:\n  z_dim: 4\ntrain:\n  lr: 1e-4\n  test_size: null\n")
    model, train = configfile.configs_from_file(path)
    assert model.z_dim == 4 and train.lr == 1e-4 and train.test_size is None


def test_write_run_config_writes_config_toml_atomically(tmp_path):
    configs = non_default_configs(tmp_path)
    path = configfile.write_run_config(tmp_path, *configs)
    assert path == tmp_path / "config.toml"
    assert configfile.configs_from_file(path) == configs
    configfile.write_run_config(tmp_path, ModelConfig(), TrainConfig())  # replaced whole
    assert configfile.configs_from_file(path) == (ModelConfig(), TrainConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temporary left


# -- the command line: defaults < file < options given ------------------------------------------


def test_options_given_override_the_file_which_overrides_the_defaults(tmp_path):
    path = write(tmp_path / "c.toml", "[model]\nz_dim = 8\nhidden = [16]\n[train]\nepochs = 3\n")
    model, train = configs_from_args(parse("--config", str(path), "--z-dim", "4"))
    assert (model.z_dim, model.hidden, train.epochs) == (4, (16,), 3)
    assert train.batch_size == TrainConfig().batch_size and model.prior == ModelConfig().prior
    model, train = configs_from_args(parse("--config", str(path)))
    assert (model.z_dim, train.epochs) == (8, 3)


def test_the_file_overrides_an_experiments_defaults(tmp_path):
    """A script's own defaults (``add_train_arguments(p, z_dim=10)``) are the parser's: the
    file still wins over them, and the command line over both."""
    p = argparse.ArgumentParser()
    options.add_train_arguments(p, z_dim=10, epochs=7)
    path = write(tmp_path / "c.toml", "[model]\nz_dim = 8\n")
    model, train = configs_from_args(p.parse_args(["--config", str(path)]))
    assert (model.z_dim, train.epochs) == (8, 7)
    model, _ = configs_from_args(p.parse_args(["--config", str(path), "--z-dim", "3"]))
    assert model.z_dim == 3


def test_with_resume_the_file_counts_as_options_given(tmp_path):
    """``configs_from_args(args, base)`` (``--resume``): the saved configs, with the file's
    values and the options given changed; what neither sets stays as saved, not the default."""
    base = ModelConfig(z_dim=3, hidden=(16,)), TrainConfig(epochs=2, seed=5)
    path = write(tmp_path / "c.toml", "[train]\nepochs = 4\nlr = 0.002\n")
    model, train = configs_from_args(parse("--config", str(path), "--lr", "0.01"), base)
    assert (model.z_dim, model.hidden, train.seed) == (3, (16,), 5)
    assert (train.epochs, train.lr) == (4, 0.01)


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_print_config_writes_what_reads_back_and_nothing_else(fmt, capsys, tmp_path):
    if fmt == "yaml":
        pytest.importorskip("yaml")
    if fmt == "yaml":
        ours = write(tmp_path / "c.yaml", "model:\n  z_dim: 8\ntrain:\n  lr: 0.0005\n")
    else:
        ours = write(tmp_path / "c.toml", "[model]\nz_dim = 8\n[train]\nlr = 0.0005\n")
    argv = ["train", "--config", str(ours), "--epochs", "3", "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert cli.main([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [ours.name]  # no --out, no runs/
    back = configfile.configs_from_file(write(tmp_path / f"printed.{fmt}", printed))
    assert back == configs_from_args(parse(*argv[1:]))
    assert (back[0].z_dim, back[1].lr, back[1].epochs) == (8, 0.0005, 3)


def test_print_config_without_a_file_is_toml_of_the_options(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["train", "--z-dim", "5", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    back = configfile.configs_from_file(write(tmp_path / "p.toml", printed))
    assert back == (ModelConfig(z_dim=5), TrainConfig())


# -- bad files: one line, exit 1, nothing written ---------------------------------------------


BAD_FILES = [
    ("unknown key", "c.toml", "[model]\nz_dimm = 3\n",
     r"c\.toml: unknown \[model\] key 'z_dimm' \(did you mean 'z_dim'\?\); choose one of \["),
    ("the flag's spelling", "c.toml", "[train]\nparticles = 3\n",
     r"unknown \[train\] key 'particles' \(did you mean 'num_particles'\?\)"),
    ("key in the other table", "c.toml", "[model]\nepochs = 3\n",
     r"c\.toml: 'epochs' belongs in \[train\], not \[model\]"),
    ("key outside the tables", "c.toml", "z_dim = 3\n", r"'z_dim' is outside .* under \[model\]"),
    ("unknown section", "c.toml", "[modle]\nz_dim = 3\n",
     r"unknown section 'modle' \(did you mean 'model'\?\); choose one of \['model', 'train'\]"),
    ("a value set from the data", "c.toml", "[model]\nx_dim = 3\n",
     r"\[model\] x_dim is set from the data"),
    ("wrong type", "c.toml", '[model]\nz_dim = "eight"\n',
     r'c\.toml: \[model\] z_dim must be an integer, e.g. z_dim = 50; got "eight" \(a string\)'),
    ("wrong type in a list", "c.toml", "[model]\nhidden = [16, 1.5]\n",
     r"\[model\] hidden must be a list of integers, e.g. hidden = \[500, 500\]"),
    ("a list of the wrong length", "c.toml", "[train]\nadam_betas = [0.9]\n",
     r"adam_betas must be a list of 2 numbers"),
    ("true for a number", "c.toml", "[train]\nlr = true\n", r"lr must be a number"),
    ("a table for a table", "c.toml", "model = 3\n", r"\[model\] must be a table"),
    ("syntax error", "c.toml", "[model]\nz_dim = 3\nhidden == [16]\n",
     r"c\.toml is not valid TOML: .*line 3.*; fix that line"),
    ("syntax error at the end", "c.toml", "[model]\nz_dim = 3\nhidden = [16,\n",
     r"c\.toml is not valid TOML: .*end of document.*; fix the file"),
    ("missing file", "none.toml", None, r"no config file at .*none\.toml"),
    ("other suffix", "c.json", "{}", r"c\.json: its suffix '\.json' is not one of \.toml"),
]  # fmt: skip


@pytest.mark.parametrize("case, name, text, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_one_line(case, name, text, message, capsys, tmp_path):
    path = tmp_path / name if text is None else write(tmp_path / name, text)
    out = tmp_path / "run"
    refused(capsys, ["train", "--config", str(path), "--out", str(out)], message, tmp_path)
    assert not out.exists()
    with pytest.raises(ValueError, match=message):
        configfile.configs_from_file(path)


def test_bad_yaml_is_one_line(capsys, tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path / "c.yaml", "model:\n  z_dim: [3\ntrain: {}\n")
    refused(
        capsys, ["train", "--config", str(path)], r"c\.yaml is not valid YAML: .*line", tmp_path
    )
    path = write(tmp_path / "d.yaml", "- 1\n- 2\n")
    refused(capsys, ["train", "--config", str(path)], r"must hold the tables", tmp_path)


def test_yaml_without_pyyaml_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml: ImportError
    path = write(tmp_path / "c.yaml", "model:\n  z_dim: 3\n")
    refused(
        capsys, ["train", "--config", str(path)], r"reading .*c\.yaml needs PyYAML: pip", tmp_path
    )


SAME_LINE = [
    ("[model]\nz_dim = 0\n", ["--z-dim", "0"], {"z_dim": 0}),
    ("[model]\nhidden = [64, -1]\n", ["--hidden", "64", "-1"], {"hidden": (64, -1)}),
    ("[train]\nlr = nan\n", ["--lr", "nan"], {"lr": float("nan")}),
    ("[train]\nadam_betas = [1, 0.9]\n", ["--adam-betas", "1", "0.9"], {"adam_betas": (1.0, 0.9)}),
    ('[train]\nelbo = "elbo2"\n', ["--elbo", "elbo2"], {"elbo": "elbo2"}),
    ('[model]\nprior = "cauchyish"\n', ["--prior", "cauchyish"], {"prior": "cauchyish"}),
]  # fmt: skip


@pytest.mark.parametrize("text, flags, fields", SAME_LINE, ids=[s[1][0] for s in SAME_LINE])
def test_a_bad_value_is_the_same_line_from_file_command_line_and_python(
    text, flags, fields, capsys, tmp_path
):
    path = write(tmp_path / "c.toml", text)
    out = tmp_path / "run"
    from_file = refused(capsys, ["train", "--config", str(path), "--out", str(out)], "", tmp_path)
    from_flags = refused(capsys, ["train", *flags, "--out", str(out)], "", tmp_path)
    assert from_file == from_flags and not out.exists()
    cls = ModelConfig if next(iter(fields)) in ModelConfig.__dataclass_fields__ else TrainConfig
    with pytest.raises(ValueError) as err:
        cls(**fields)
    assert from_file == f"pyro-vae: error: {err.value}"


# -- a run folder's config.toml trains the same run again -------------------------------------


def metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in csv.DictReader(f)]


def test_training_from_a_runs_config_toml_reproduces_it_bit_for_bit(capsys, tmp_path):
    x, y = tmp_path / "X", tmp_path / "Y"
    flags = ["--seed", "3", "--lr", "0.003", "--batch-size", "64", "--beta", "0.5"]
    assert cli.main(["train", *TINY, *flags, "--out", str(x)]) == 0
    saved_x = checkpoint.load(x / "checkpoint.pt")
    assert (x / "config.toml").is_file()  # every run folder holds its configuration
    assert cli.main(["train", "--config", str(x / "config.toml"), "--out", str(y)]) == 0
    saved_y = checkpoint.load(y / "checkpoint.pt")
    assert saved_y["model_config"] == saved_x["model_config"]
    assert saved_y["train_config"] == saved_x["train_config"]
    for part in ("modules", "optimizer"):
        tensors_x = [v for _, v in checkpoint.leaves(saved_x["trainer"][part])]
        tensors_y = [v for _, v in checkpoint.leaves(saved_y["trainer"][part])]
        assert len(tensors_x) == len(tensors_y) > 0
        for a, b in zip(tensors_x, tensors_y, strict=True):
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    assert metrics(y) == metrics(x) and len(metrics(x)) == 1

    # --resume with a file: its values count as given options; the run's own file changes
    # nothing, a file with another z_dim is refused in one line, leaving the run as it was
    other = write(tmp_path / "other.toml", "[model]\nz_dim = 3\n")
    argv = ["train", "--resume", "--config", str(other), "--out", str(x)]
    refused(capsys, argv, r"--resume: .*z_dim 2 \(given 3\)", x)
    argv = ["train", "--resume", "--config", str(x / "config.toml"), "--out", str(x)]
    assert cli.main([*argv, "--epochs", "2"]) == 0
    assert len(metrics(x)) == 2 and metrics(x)[0] == metrics(y)[0]
