"""CLI smoke runs in a subprocess: train, evaluate, sample, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyro_vae", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYRO_VAE_DATA": "", **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(tiny_mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    done = cli(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tiny_mnist_dir),
        "--epochs",
        "2",
        "--train-size",
        "300",
        "--test-size",
        "50",
        "--z-dim",
        "3",
        "--hidden",
        "32",
        "--ll-samples",
        "20",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return out, done


def test_train_writes_and_prints_its_output_folder(trained):
    out, done = trained
    assert f"output folder: {out}" in done.stderr
    assert "epoch 2/2: train ELBO" in done.stderr
    assert "k=20 importance samples" in done.stderr
    for name in (
        "checkpoint.pt",
        "metrics.csv",
        "curves.png",
        "reconstructions.png",
        "prior_samples.png",
        "evaluation.json",
    ):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "evaluation.json").read_text())
    assert result["epochs"] == 2 and result["model_config"]["hidden"] == [32]


def test_resume_and_evaluate_and_sample(trained, tmp_path):
    out, _ = trained
    done = cli("train", "--out", str(out), "--epochs", "3", "--resume", "--ll-samples", "5")
    assert done.returncode == 0, done.stderr
    assert len((out / "metrics.csv").read_text().splitlines()) == 4
    done = cli(
        "evaluate",
        str(out / "checkpoint.pt"),
        "--samples",
        "50",
        "--test-size",
        "20",
        "--json",
        str(tmp_path / "e.json"),
    )
    assert done.returncode == 0, done.stderr
    assert "log p(x)" in done.stdout and "k=50" in done.stdout
    assert json.loads((tmp_path / "e.json").read_text())["n_data"] == 20
    done = cli("sample", str(out / "checkpoint.pt"), "--out", str(tmp_path / "s.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "nowhere.pt"], "no checkpoint at nowhere.pt"),
        (
            [
                "train",
                "--dataset",
                "binarized-mnist",
                "--data-dir",
                "/nonexistent",
                "--epochs",
                "1",
            ],
            "binarized_mnist_{train,valid,test}.amat",
        ),
        (["train", "--device", "cuda", "--epochs", "1"], "--device cpu"),
    ],
)
def test_errors_are_one_line(args, message):
    if "cuda" in args:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    done = cli(*args)
    assert done.returncode == 1
    assert done.stderr.startswith("pyro-vae: error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_console_script_is_installed():
    done = subprocess.run(["pyro-vae", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout


def test_help_shows_defaults_and_run_lists_the_experiments():
    done = cli("train", "--help")
    assert done.returncode == 0 and "(default: 128)" in done.stdout
    done = cli("run", "--help")
    assert done.returncode == 0, done.stderr
    assert "beta_vae" in done.stdout and "semi_supervised" in done.stdout
    done = cli("run")
    assert done.returncode == 0 and "latent_2d" in done.stdout
    done = cli("run", "beta_vae", "--help")
    assert done.returncode == 0 and "usage: pyro-vae run beta_vae" in done.stdout
    assert "(default: 10)" in done.stdout  # the experiment's own z_dim default


@pytest.mark.parametrize(
    "args, sites",
    [
        (["--guide", "normal"], {"z"}),
        (["--guide", "fullcov"], {"z"}),
        (["--guide", "iaf"], {"z"}),
        (["--guide", "delta", "--prior", "flat"], {"z"}),
        (["--model", "hvae", "--z1-dim", "4", "--top-hidden", "8"], {"z1", "z2"}),
        (
            ["--model", "hvae", "--guide", "ladder", "--z1-dim", "4", "--top-hidden", "8"],
            {"z1", "z2"},
        ),
        (["--model", "cvae"], {"z"}),
        (["--model", "m2", "--labels", "20", "--elbo", "enum"], {"z", "y_probs"}),
        (["--model", "jointvae", "--elbo", "enum", "--categories", "3"], {"z", "c_probs"}),
        (["--model", "vqvae", "--codebook-size", "4", "--code-dim", "1"], {"z"}),
        (["--guide", "spherical", "--prior", "spherical"], {"z"}),
    ],
)
def test_encode_writes_every_guides_point_summary(
    args, sites, tiny_mnist_dir, tmp_path, capsys, monkeypatch
):
    """In one process (the CLI's main, as the console script calls it): the subprocess twin of
    these steps is test_resume_and_evaluate_and_sample."""
    import numpy as np

    from pyro_vae import cli as pyro_vae_cli

    monkeypatch.setenv("PYRO_VAE_DATA", "")
    out = tmp_path / "run"
    assert pyro_vae_cli.main([
        "train", "--data-dir", str(tiny_mnist_dir), "--epochs", "1", "--train-size", "200",
        "--test-size", "30", "--z-dim", "2", "--hidden", "16", "--ll-samples", "0",
        "--out", str(out), "--no-progress", *args,
    ]) == 0  # fmt: skip
    encode = ["encode", str(out / "checkpoint.pt"), "--data-dir", str(tiny_mnist_dir)]
    assert pyro_vae_cli.main(encode) == 0
    codes = np.load(out / "codes.npz")
    # and each site's loc and scale where q is a mean-field Normal given x alone (not M2's)
    posterior = {f"{s}_{p}" for s in sites for p in ("loc", "scale")}
    assert sites | {"labels", "names"} <= set(codes.files)
    assert set(codes.files) <= sites | {"labels", "names"} | posterior
    assert all(codes[s].shape[0] == 30 and np.isfinite(codes[s]).all() for s in sites)
    capsys.readouterr()
    done = pyro_vae_cli.main(["sample", str(out / "checkpoint.pt"), "--n", "12", "--seed", "1"])
    if "flat" in args:
        err = capsys.readouterr().err
        assert done == 1 and not (out / "samples-n12-seed1.png").exists()
        assert err.count("\n") == 1 and "cannot be sampled" in err
    else:
        assert done == 0 and (out / "samples-n12-seed1.png").stat().st_size > 0


def test_hvae_run_folder(tiny_mnist_dir, tmp_path):
    out = tmp_path / "h"
    done = cli(
        "train", "--model", "hvae", "--guide", "ladder", "--data-dir", str(tiny_mnist_dir),
        "--epochs", "2", "--train-size", "300", "--test-size", "40", "--z-dim", "2",
        "--z1-dim", "4", "--hidden", "16", "--top-hidden", "8", "--ll-samples", "20",
        "--warmup-epochs", "2", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["active_units"]) == {"z1", "z2"} and "log_likelihood" in result
    assert "active units z1" in done.stderr
    for name in ("layers_z1_varies.png", "layers_z2_varies.png", "prior_samples.png"):
        assert (out / name).stat().st_size > 0
    done = cli("train", "--out", str(out), "--epochs", "3", "--resume", "--ll-samples", "0")
    assert done.returncode == 0, done.stderr
