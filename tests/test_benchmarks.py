"""Benchmark scripts run end to end on tiny settings (their numbers are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

# every row of benchmarks/quality.py's CONFIGS (the test below fails if one is missing)
VARIANTS = ["vae", "iwae5", "iwae50", "vampprior", "mog", "fullcov", "iaf"]


def speed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "benchmarks/speed.py", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_speed_benchmark_smoke(tiny_mnist_dir):
    done = speed(
        "--data-dir",
        str(tiny_mnist_dir),
        "--train-size",
        "512",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--z-dim",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert "ratio pyro-vae / hand-written" in done.stdout
    assert "hand-written" in done.stdout and "ms/step" in done.stdout


def test_speed_benchmark_named_rows(tiny_mnist_dir):
    done = speed(
        "--data-dir",
        str(tiny_mnist_dir),
        "--nets",
        "small",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
    )
    assert done.returncode == 0, done.stderr
    assert "784-64-64-8, batch 32, 10000 data" in done.stdout
    assert done.stdout.count("ratio pyro-vae / hand-written") == 1


def test_quality_benchmark_smoke(tiny_mnist_dir, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/quality.py",
            "--data-dir",
            str(tiny_mnist_dir),
            "--datasets",
            "mnist",
            "--configs",
            *VARIANTS,
            "--epochs",
            "1",
            "--train-size",
            "256",
            "--test-size",
            "32",
            "--ll-samples",
            "8",
            "--hidden",
            "32",
            "--z-dim",
            "4",
            "--out",
            str(tmp_path / "q"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [r["config"] for r in rows] == ["vae", "hand-written VAE", *VARIANTS[1:]]
    assert all(r["neg_log_likelihood"] > 0 and r["importance_samples"] == 8 for r in rows)
    assert rows[0]["published"] == 86.76
    assert "| mnist (32 test) | dynamic | vae | 1 |" in done.stdout
    listed = subprocess.run(
        [sys.executable, "benchmarks/quality.py", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    assert all(name in listed for name in VARIANTS)
    assert "{" + ",".join(sorted(VARIANTS)) + "}" in listed.replace("\n", "").replace(" ", "")


def test_scaling_benchmark_smoke(tiny_mnist_dir):
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/scaling.py",
            "--data-dir",
            str(tiny_mnist_dir),
            "--train-size",
            "400",
            "--epochs",
            "2",
            "--batch-size",
            "100",
            "--",
            "--hidden",
            "16",
            "--z-dim",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "samples/s" in lines[1] and len(lines) == 4  # header, title, one row per count


def test_speed_benchmark_vaegan_row(tiny_mnist_dir):
    done = speed(
        "--data-dir",
        str(tiny_mnist_dir),
        "--nets",
        "vaegan",
        "--train-size",
        "128",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
    )
    assert done.returncode == 0, done.stderr
    assert "conv VAE-GAN 1x28x28-256-32, batch 64, 128 data, 2 steps/epoch" in done.stdout
    assert done.stdout.count("ratio pyro-vae / hand-written") == 1


def test_zoo_benchmark_smoke(tiny_mnist_dir, tmp_path):
    """A few rows end to end; every model of the zoo is offered by --models."""
    out = tmp_path / "zoo"
    argv = ["--data-dir", str(tiny_mnist_dir), "--models", "vae", "planar", "jointvae-exact"]
    argv += ["--epochs", "1", "--train-size", "256", "--test-size", "32", "--ll-samples", "4"]
    argv += ["--quality-samples", "16", "--hidden", "16", "--z-dim", "3", "--out", str(out)]
    argv += ["--samplers", "gmm:2", "two-stage:8"]
    done = subprocess.run(
        [sys.executable, "benchmarks/zoo.py", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "zoo.json").read_text())
    assert [r["model"] for r in rows] == ["vae", "planar", "jointvae-exact"]
    for r in rows:
        assert r["importance_samples"] == 4 and r["log_likelihood"] < 0
        assert r["quality"]["metric"] == "FD-mnist-classes" and r["quality"]["n"] == 16
        assert r["quality"]["reconstruction_mse"] > 0
    assert rows[0]["quality"]["ex_post"]["fd"] >= 0 and "summed_log_likelihood" not in rows[0]
    scored = rows[0]["quality"]["samplers"]
    assert set(scored) == {"gmm:2", "two-stage:8"}
    assert rows[0]["quality"]["ex_post"]["fd"] == min(v["fd"] for v in scored.values())
    # JointVAE's codes are two sites (no one-array sampler); c summed out in its own column
    assert rows[2]["quality"]["ex_post"] is None and rows[2]["summed_log_likelihood"] < 0
    table = (out / "zoo.md").read_text()
    assert "| planar: VAE with 8 planar flows" in table and "| — | — |" in table
    listed = (
        subprocess.run(
            [sys.executable, "benchmarks/zoo.py", "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        .stdout.replace("\n", "")
        .replace(" ", "")
    )
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from zoo import ZOO
    finally:
        sys.path.pop(0)
    assert all(name in listed for name in ZOO)
