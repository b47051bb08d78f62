"""Benchmark scripts run end to end on tiny settings (their numbers are not checked here)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_speed_benchmark_smoke(tiny_mnist_dir):
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/speed.py",
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
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "ratio pyro-vae / hand-written" in done.stdout
    assert "hand-written" in done.stdout and "ms/step" in done.stdout
