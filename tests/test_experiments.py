"""Every script in experiments/ runs with --smoke (as Pyro's tests/test_examples.py does).

Adding a script without listing it here fails ``test_every_experiment_is_listed``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA

EXPERIMENTS = [
    "train_mnist",
]


def test_every_experiment_is_listed():
    found = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")
    assert found == sorted(EXPERIMENTS), "list new experiments in tests/test_experiments.py"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke(name, tmp_path, tiny_mnist_dir):
    data_root = SHARED_DATA if (SHARED_DATA / "mnist").exists() else tiny_mnist_dir.parent
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--smoke", "--out", str(tmp_path / name)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "PYRO_VAE_DATA": str(data_root)},
    )
    assert done.returncode == 0, done.stderr
    assert f"output folder: {tmp_path / name}" in done.stderr
    assert any((tmp_path / name).glob("*.png"))
