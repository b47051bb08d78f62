"""A trained model to take home (issue 21): portable runs, new data in and out on the command
line, the Python API (fit, save, load), and the small things a new user hits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyro_vae
from pyro_vae import checkpoint, cli, data
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.train import Trainer

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "16", "--ll-samples", "4", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))


def write_folder(root: Path, n: int = 30, size: int = 8, seed: int = 0) -> Path:
    """Grey images in two class folders: a bright square whose corner is the class."""
    rng = np.random.default_rng(seed)
    for label in (0, 1):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            img = rng.integers(0, 60, (size, size)).astype(np.uint8)
            img[label * 4 : label * 4 + 4, :4] = 250
            Image.fromarray(img).save(root / f"c{label}" / f"{i}.png")
    return root


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("pyro-vae: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err  # notes may precede it
    return errors[0]


def files_under(root: Path) -> set[Path]:
    """Every path under ``root`` but the image cache (decoding a folder fills it)."""
    return {p for p in root.rglob("*") if "cache" not in p.relative_to(root).parts}


def test_a_run_on_a_relative_folder_moves_with_its_data(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    write_folder(work / "imgs")
    monkeypatch.chdir(work)
    assert cli.main(["train", "--dataset", "folder:imgs", *TINY, "--out", "runs/a"]) == 0
    saved = checkpoint.load(work / "runs/a/checkpoint.pt")
    assert saved["train_config"]["dataset"] == f"folder:{work / 'imgs'}"  # recorded resolved
    fingerprint = saved["data"]["fingerprint"]

    # the run and its data move; the user works from elsewhere
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(work / "runs/a", moved / "run")
    shutil.move(work / "imgs", moved / "pictures")
    monkeypatch.chdir(tmp_path)
    ckpt = str(moved / "run/checkpoint.pt")
    line = one_line_error(capsys, ["evaluate", ckpt, "--samples", "3"])
    assert "is not a folder" in line
    capsys.readouterr()
    assert (
        cli.main(["evaluate", ckpt, "--samples", "3", "--dataset", "folder:elsewhere/pictures"])
        == 0
    )
    assert "ELBO" in capsys.readouterr().out
    # by name under --data-dir: the folder kept its name
    shutil.move(moved / "pictures", moved / "imgs")
    assert cli.main(["encode", ckpt, "--data-dir", str(moved), "--out", "c.npz"]) == 0
    assert np.load("c.npz")["z"].shape == (3, 2)  # the seeded 10% test split
    assert cli.main(["train", "--resume", "--out", str(moved / "run"), "--epochs", "2",
                     "--dataset", f"folder:{moved / 'imgs'}"]) == 0  # fmt: skip
    resumed = checkpoint.load(moved / "run/checkpoint.pt")
    assert resumed["trainer"]["epoch"] == 2 and resumed["data"]["fingerprint"] == fingerprint
    assert resumed["train_config"]["dataset"] == f"folder:{moved / 'imgs'}"

    # other data of the same shape: refused with both fingerprints, scored on purpose
    write_folder(tmp_path / "other", seed=1)
    before = files_under(tmp_path)
    line = one_line_error(capsys, ["evaluate", ckpt, "--dataset", f"folder:{tmp_path / 'other'}"])
    assert fingerprint in line and "--other-data" in line
    assert files_under(tmp_path) == before
    report = tmp_path / "other.json"
    argv = ["evaluate", ckpt, "--dataset", f"folder:{tmp_path / 'other'}", "--other-data"]
    assert cli.main([*argv, "--samples", "3", "--json", str(report)]) == 0
    assert "other data than the run was trained on" in capsys.readouterr().out
    result = json.loads(report.read_text())
    assert result["other_data"] is True and result["n_data"] == 30  # its whole test split


def test_default_output_folder_has_a_safe_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (40, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "my data.npy", images)
    assert cli.main(["train", "--dataset", f"array:{tmp_path / 'my data.npy'}", *TINY]) == 0
    (out,) = (tmp_path / "runs").iterdir()
    assert out.name.startswith("my-data-") and ":" not in out.name
    assert (out / "checkpoint.pt").is_file()
    assert data.short_name("folder:/x/cifar10/") == "cifar10"
    assert data.short_name("mnist") == "mnist"
    assert data.short_name("mypkg.data:load") == "load"


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    """A conditional VAE on a tiny folder of labelled 8 x 8 images."""
    root = tmp_path_factory.mktemp("cvae")
    os.environ.setdefault("PYRO_VAE_CACHE", str(root / "cache"))
    write_folder(root / "imgs", n=40)
    argv = ["train", "--model", "cvae", "--dataset", f"folder:{root / 'imgs'}", *TINY]
    assert cli.main([*argv, "--out", str(root / "run")]) == 0
    return root


def test_new_images_in_codes_and_images_out(cvae_run, tmp_path, capsys):
    ckpt = str(cvae_run / "run/checkpoint.pt")
    fresh = write_folder(tmp_path / "fresh", n=6, seed=5)
    codes = tmp_path / "codes.npz"
    assert cli.main(["encode", ckpt, "--input", f"folder:{fresh}", "--out", str(codes)]) == 0
    got = np.load(codes)
    assert got["z"].shape == (6, 2) and list(got["labels"]) == [0, 0, 0, 1, 1, 1]
    assert got["names"][0].endswith("c0/0.png") and got["z_scale"].min() > 0
    # the same images as files and as an array give the same codes
    files = sorted(str(p) for p in fresh.rglob("*.png"))
    array = np.stack([np.asarray(Image.open(f)) for f in files])
    np.savez(tmp_path / "a.npz", images=array, labels=[0, 0, 0, 1, 1, 1])
    assert cli.main(["encode", ckpt, "--input", f"array:{tmp_path / 'a.npz'}",
                     "--out", str(tmp_path / "b.npz")]) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "b.npz")["z"], got["z"], atol=1e-6)
    # decode the codes: a grid, one PNG per code and the means; labels from the .npz
    out = tmp_path / "decoded"
    argv = ["decode", ckpt, "--codes", str(codes), "--out", str(out), "--format", "both"]
    assert cli.main([*argv, "--each"]) == 0
    means = np.load(out / "decoded.npy")
    assert means.shape == (6, 1, 8, 8) and means.min() >= 0 and means.max() <= 1
    assert (out / "decoded.png").is_file() and len(list((out / "decoded").glob("*.png"))) == 6
    # reconstruct and interpolate given images; sample one class at a temperature
    assert cli.main(["reconstruct", ckpt, "--input", *files[:3], "--label", "1",
                     "--out", str(tmp_path / "r"), "--format", "both"]) == 0  # fmt: skip
    assert np.load(tmp_path / "r/reconstructions.npy").shape == (3, 1, 8, 8)
    assert (tmp_path / "r/inputs_and_reconstructions.png").is_file()
    argv = ["interpolate", ckpt, files[0], files[-1], "--steps", "5", "--label", "0"]
    assert cli.main([*argv, "--out", str(tmp_path / "i"), "--format", "npy"]) == 0
    path = np.load(tmp_path / "i/interpolation.npy")
    assert path.shape == (5, 1, 8, 8)
    argv = ["interpolate", ckpt, f"{codes}:0", f"{codes}:5", "--steps", "4", "--label", "0"]
    assert cli.main([*argv, "--out", str(tmp_path / "j"), "--path", "spherical"]) == 0
    assert (tmp_path / "j/interpolation.png").is_file()
    argv = ["sample", ckpt, "--n", "8", "--label", "1", "--temperature", "0.5", "--format", "npy"]
    assert cli.main([*argv, "--out", str(tmp_path / "s.npy")]) == 0
    cold = np.load(tmp_path / "s.npy")
    assert cold.shape == (8, 1, 8, 8)
    capsys.readouterr()
    # bad input: one line, nothing written
    before = files_under(tmp_path)
    for argv, needle in (
        (["sample", ckpt, "--n", "0"], "n must be a whole number >= 1"),
        (["sample", ckpt, "--temperature", "0"], "temperature must be a finite number > 0"),
        (["sample", ckpt, "--label", "7"], "--label must lie in 0..1"),
        (["decode", ckpt, "--codes", str(tmp_path / "nope.npz")], "could not be read"),
        (["encode", ckpt, "--input", str(tmp_path / "a.npz")], "is not an image file"),
        (["interpolate", ckpt, f"{codes}:9", f"{codes}:0"], "holds 6 rows of codes"),
        (["reconstruct", ckpt, "--input", *files[:2]], "encodes and decodes given a label"),
    ):
        assert needle in one_line_error(capsys, argv)
    assert files_under(tmp_path) == before


def test_temperature_scales_the_prior_draws(cvae_run):
    run = pyro_vae.load(cvae_run / "run", device="cpu")
    torch.manual_seed(0)
    hot = run.kind.sample(run, 2000, 1.0, torch.zeros(2000, dtype=torch.long))["z"]
    torch.manual_seed(0)
    cold = run.kind.sample(run, 2000, 0.25, torch.zeros(2000, dtype=torch.long))["z"]
    torch.testing.assert_close(cold, hot * 0.25)  # N(0, I) at temperature t: t * the same draw
    assert abs(hot.std().item() - 1) < 0.05


def test_python_api_on_a_dataloader_saves_a_run_that_loads_in_a_new_process(tmp_path, capsys):
    images = torch.zeros(200, 1, 8, 8, dtype=torch.uint8)
    labels = torch.arange(200) % 2
    images[labels == 0, :, :4] = 255
    images[labels == 1, :, 4:] = 255
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=32, shuffle=True
    )
    run = pyro_vae.fit(loader, z_dim=2, hidden=(16,), epochs=2, ll_samples=4, progress=False)
    assert "200 data in [0, 1]" in capsys.readouterr().err
    assert run.data.train_labels is not None and len(run.data.test) == 20
    z = run.encode(images[:5])
    assert z.shape == (5, 2)
    assert run.decode(z).shape == run.reconstruct(images[:5]).shape == (5, 1, 8, 8)
    assert run.sample(3, seed=1).shape == (3, 1, 8, 8)
    assert np.isfinite(run.elbo(images[:20].numpy()))
    assert run.log_likelihood(images[:4], samples=8).shape == (4,)
    saved = run.save(tmp_path / "saved")
    assert {"checkpoint.pt", "config.toml", "metrics.csv", "reconstructions.png"} <= {
        p.name for p in saved.iterdir()
    }
    np.save(tmp_path / "x.npy", images[:5].numpy())
    code = textwrap.dedent(f"""
        import numpy as np, pyro_vae
        run = pyro_vae.load({str(tmp_path / "saved")!r}, device="cpu")
        z = run.encode(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "z.npy")!r}, z.numpy())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), z.numpy(), atol=1e-6)
    assert cli.main(["evaluate", str(saved / "checkpoint.pt")]) == 1  # no data to score
    assert "given from Python" in capsys.readouterr().err


def test_python_api_on_tabular_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + 10).astype(np.float32)
    run = pyro_vae.fit(rows, z_dim=2, hidden=(16,), epochs=2, ll_samples=4, out=tmp_path / "t")
    assert "300 rows of 5 real values: a Normal likelihood" in capsys.readouterr().err
    assert run.model_config.likelihood == "normal" and run.binarize == "none"
    assert run.encode(rows[:4]).shape == (4, 2)
    assert run.decode(run.encode(rows[:4])).reshape(4, -1).shape == (4, 5)
    with pytest.raises(ValueError, match=r"unknown option 'z_dimm': did you mean z_dim"):
        pyro_vae.fit(rows, z_dimm=2)
    with pytest.raises(ValueError, match=r"z_dim must be at least 1; got 0"):
        pyro_vae.fit(rows, z_dim=0)
    with pytest.raises(ValueError, match=r"shape \(2, 3\); this model reads data shaped"):
        run.encode(np.zeros((2, 3), np.float32))


def test_trainer_fit_takes_a_dataloader_as_it_takes_a_tensor():
    from pyro_vae import kinds

    x = torch.bernoulli(torch.rand(256, 784, generator=torch.Generator().manual_seed(0)))
    y = torch.arange(256) % 10
    loader = torch.utils.data.DataLoader(x, batch_size=64)
    # read once, in order, into the tensors the loop slices its own batches from
    assert torch.equal(data.collect(loader), x)
    assert torch.equal(data.collect(torch.utils.data.TensorDataset(x)), x)
    pair = data.collect(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), 100))
    assert torch.equal(pair[0], x) and torch.equal(pair[1], y)
    assert torch.equal(data.collect(x.numpy()), x)
    model, guide = kinds.build(ModelConfig(x_dim=784, z_dim=4, hidden=(32,)))
    trainer = Trainer(model, guide, TrainConfig(batch_size=64), torch.device("cpu"))
    history = trainer.fit(loader, 1, test=torch.utils.data.DataLoader(x[:64], batch_size=10))
    assert len(history) == 1 and np.isfinite(history[0]["test_elbo"])
    with pytest.raises(ValueError, match="are empty"):
        trainer.fit([], 2)
    with pytest.raises(ValueError, match="must be a tensor, a NumPy array, a torch Dataset"):
        trainer.fit("x", 2)


MY_LIKELIHOOD = """
import pyro.distributions as dist


def laplace(out):  # p(x|z) = Laplace(f(z), 0.1): the README's 3-line likelihood
    return dist.Laplace(out, 0.1).to_event(1)


def needs_more(out, width):
    return dist.Laplace(out, width).to_event(1)
"""


def test_console_script_finds_user_modules_and_takes_a_likelihood_function(tmp_path):
    (tmp_path / "mypieces.py").write_text(MY_LIKELIHOOD)
    script = Path(sys.executable).parent / "pyro-vae"
    base = [str(script), "train", "--train-size", "200", "--test-size", "20", *TINY]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [*base, "--likelihood", "mypieces:laplace", "--binarize", "none", "--out", "lap"],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*base, "--likelihood", "mypieces:needs_more", "--out", "bad"],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "is neither a likelihood (a function of one argument" in done.stderr
    assert not (tmp_path / "bad").exists()
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"pyro-vae {pyro_vae.__version__}"


def test_refused_runs_leave_nothing_behind(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    out = tmp_path / "tb"
    line = one_line_error(capsys, ["train", "--tensorboard", *TINY, "--out", str(out)])
    assert "--tensorboard needs the tensorboard package: pip install tensorboard" in line
    with pytest.raises(ValueError, match="needs the tensorboard package"):
        TrainConfig(tensorboard=True).check_packages()
    line = one_line_error(
        capsys,
        ["train", "--dataset", f"array:{tmp_path / 'missing.npz'}", *TINY, "--out", str(out)],
    )
    assert "missing.npz not found: check the path" in line
    assert not out.exists()


def test_the_readmes_take_home_session_runs_as_written(tmp_path):
    """The README's take-home session, run by bash as written, on a folder of made-up photos."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("<!-- takehome -->\n```bash\n")[1].split("```\n<!-- /takehome -->")[0]
    rng = np.random.default_rng(0)
    for folder, n in (("photos", 24), ("new-photos", 4)):
        for label in ("cat", "dog"):
            (tmp_path / folder / label).mkdir(parents=True)
            for i in range(n // 2):
                img = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)  # cropped to 16 x 16
                Image.fromarray(img).save(tmp_path / folder / label / f"{i}.png")
    env = {**os.environ, "PYRO_VAE_CACHE": str(tmp_path / "cache")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch.Size([4, 3, 16, 16])" in done.stdout
    assert "other data than the run was trained on" in done.stdout
    assert checkpoint.load(tmp_path / "moved-run/checkpoint.pt")["trainer"]["epoch"] == 3
    assert len(list((tmp_path / "decoded/decoded").glob("*.png"))) == 4
    assert (tmp_path / "runs/again/checkpoint.pt").is_file()


def test_tabular_rows_from_the_command_line(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(200, 7)) * 3
    np.save(tmp_path / "rows.npy", rows)
    spec = f"array:{tmp_path / 'rows.npy'}"
    before = files_under(tmp_path)
    line = one_line_error(capsys, ["train", "--dataset", spec, *TINY, "--out", str(tmp_path / "b")])
    assert "holds real values in" in line and "--likelihood normal" in line
    assert files_under(tmp_path) == before
    argv = ["train", "--dataset", spec, "--likelihood", "normal", *TINY]
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 0
    ckpt = str(tmp_path / "r/checkpoint.pt")
    assert cli.main(["encode", ckpt, "--input", spec, "--out", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["z"].shape == (200, 2)
    run = pyro_vae.load(ckpt, device="cpu")
    assert run.binarize == "none" and run.decode(torch.zeros(3, 2)).reshape(3, -1).shape == (3, 7)


def test_pieces_declare_their_options_and_the_configs_are_built_from_them(tmp_path, capsys):
    from dataclasses import fields as dc_fields

    from pyro_vae import config, configfile, kinds, likelihoods, nets, objectives, priors
    from pyro_vae.guides import GUIDES

    source = (Path(config.__file__)).read_text()
    declared = 0
    for registry, cls in (
        (kinds.KINDS, ModelConfig),
        (priors.PRIORS, ModelConfig),
        (likelihoods.LIKELIHOODS, ModelConfig),
        (GUIDES, ModelConfig),
        (nets.NETS, ModelConfig),
        (objectives.ELBOS, TrainConfig),
    ):
        for options, names in registry.options().items():
            assert issubclass(cls, options) and names
            for f in dc_fields(options):
                declared += 1
                assert f.metadata["help"] and f.name in {g.name for g in dc_fields(cls)}
                assert not re.search(rf"\b{f.name}:", source)  # config.py does not name it
    assert (
        declared >= 9
    )  # prior_components, residual, aux_weight, z1_dim, top_hidden, tc_weight, ...
    # a piece's own check, through Python, the command line and a config file alike
    with pytest.raises(ValueError) as python:
        ModelConfig(prior="mog", prior_components=0)
    line = one_line_error(capsys, ["train", "--prior-components", "0", *TINY])
    assert line == f"pyro-vae: error: {python.value}"
    file = tmp_path / "c.toml"
    file.write_text("[model]\nprior_components = 0\n")
    with pytest.raises(ValueError, match=str(python.value)):
        configfile.configs_from_file(file)


def test_experiments_smoke_wins_over_a_config_file_and_print_config_prints(tmp_path, capsys):
    from pyro_vae import configfile, experiment
    from pyro_vae.options import configs_from_args

    file = tmp_path / "c.toml"
    file.write_text("[model]\nz_dim = 7\n[train]\nepochs = 30\ntrain_size = 50000\n")
    p = experiment.parser("experiments.demo", "A demo.")
    _, train = configs_from_args(experiment.parse(p, ["--config", str(file), "--smoke"]))
    assert (train.epochs, train.train_size) == (1, 512)  # --smoke's, not the file's
    model, _ = configs_from_args(experiment.parse(p, ["--config", str(file)]))
    assert model.z_dim == 7
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        experiment.parse(p, ["--config", str(file), "--print-config"])
    assert done.value.code == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert configfile.configs_from_file(printed)[1].epochs == 30
