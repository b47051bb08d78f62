"""Faults: divergence, damaged and half-written checkpoints, kill -9, resuming with changes.
Nothing that was saved is lost, and nothing wrong is saved."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import checkpoint, cli, guides, likelihoods, models, runtime
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.train import Trainer
from tests.conftest import REPO

SMALL = ModelConfig(z_dim=3, hidden=(16,))
CPU = torch.device("cpu")


@pytest.fixture
def config(tiny_mnist_dir) -> TrainConfig:
    return TrainConfig(
        data_dir=str(tiny_mnist_dir),
        train_size=128,
        test_size=32,
        epochs=3,
        batch_size=32,
        ll_samples=0,
    )


class PoisonAt:
    """Training hook: NaN into one weight after the last step of ``epoch``."""

    def __init__(self, epoch: int, steps_per_epoch: int) -> None:
        self.step = epoch * steps_per_epoch

    def on_step(self, trainer: Trainer) -> None:
        if trainer.step == self.step:
            with torch.no_grad():
                next(trainer.loss.parameters()).view(-1)[0] = float("nan")


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_divergence_at_an_epochs_last_step_keeps_the_last_good_checkpoint(config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        runs.train(SMALL, config, out, hooks=[PoisonAt(2, 4)], progress=False)
    message = str(err.value)
    assert "diverged in epoch 2" in message and "epoch 1's" in message and "--lr" in message
    saved = checkpoint.load(out / "checkpoint.pt")  # finite, intact, epoch 1
    assert saved["trainer"]["epoch"] == 1
    with open(out / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
    run, _ = runs.train(None, None, out, resume=True, progress=False)  # and it resumes
    assert run.trainer.epoch == 3


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_divergence_in_the_first_epoch_writes_nothing(config, tmp_path):
    with pytest.raises(FloatingPointError, match="no epoch finished, so no checkpoint"):
        runs.train(SMALL, config, tmp_path / "run", hooks=[PoisonAt(1, 4)], progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_non_finite_state_is_never_written(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", {"w": torch.ones(3)})
    before = path.read_bytes()
    for bad in (torch.tensor([1.0, float("nan")]), torch.tensor([float("inf")])):
        with pytest.raises(checkpoint.CheckpointError, match="previous checkpoint is kept"):
            checkpoint.save(path, {"w": bad})
        assert path.read_bytes() == before
    checkpoint.save(path, {"w": torch.ones(3), "steps": torch.tensor([3])})  # ints are fine


def test_random_byte_flips_never_load_silently(config, tmp_path):
    runs.train(SMALL, replace(config, epochs=1), tmp_path / "run", progress=False)
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    original = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    rng = np.random.default_rng(0)
    refused = 0
    for i in range(60):
        raw = bytearray(good)
        at = int(rng.integers(0, len(raw) - 10))
        raw[at : at + 10] = rng.integers(0, 256, 10, dtype=np.uint8).tobytes()
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(raw))
        try:
            payload = checkpoint.load(path)
        except checkpoint.CheckpointError as e:
            assert "\n" not in str(e)
            refused += 1
            continue
        # loaded: only where the flip hit bytes the reader ignores, the contents unchanged
        assert payload["checksum"] == original["checksum"] == checkpoint.checksum(payload)
    assert refused >= 50


def test_stale_temporary_files_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".c.pt.tmp-{dead.pid}"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".c.pt.tmp-{os.getppid()}"  # a process that still runs: left alone
    live.write_bytes(b"being written")
    checkpoint.save(tmp_path / "c.pt", {"w": torch.ones(1)})
    assert not stale.exists() and live.exists()


def _train_cmd(tiny_mnist_dir: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pyro_vae",
        "train",
        "--data-dir",
        str(tiny_mnist_dir),
        "--train-size",
        "1000",
        "--test-size",
        "32",
        "--z-dim",
        "3",
        "--hidden",
        "32",
        "--batch-size",
        "16",
        "--ll-samples",
        "0",
        "--epochs",
        str(epochs),
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_kill_9_during_training_and_writes_never_loses_the_run(tiny_mnist_dir, tmp_path):
    """SIGKILL at random moments after a checkpoint write (epochs are ~0.1-0.3 s, so some land in
    the next write): the checkpoint left always loads, and the run always resumes to the end."""
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.pt"
    env = {**os.environ, "PYRO_VAE_DATA": ""}
    # enough that no kill comes after the last, even with epochs of milliseconds (traced step)
    # and a test process descheduled for a while
    epochs, rng = 200, np.random.default_rng(0)
    for _ in range(3):
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        resume = ["--resume"] if before is not None else []
        proc = subprocess.Popen(
            _train_cmd(tiny_mnist_dir, out, epochs, *resume),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while (not ckpt.exists() or ckpt.stat().st_mtime_ns == before) and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = checkpoint.load(ckpt)
        assert 0 < saved["trainer"]["epoch"] < epochs
    done = subprocess.run(
        _train_cmd(tiny_mnist_dir, out, epochs, "--resume"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(ckpt)["trainer"]["epoch"] == epochs
    assert not list(out.glob(".checkpoint.pt.tmp-*"))  # the killed writes' files are gone


def test_resume_takes_allowed_changes_and_logs_them(config, tmp_path, capsys, tiny_mnist_dir):
    out = tmp_path / "run"
    runs.train(SMALL, replace(config, epochs=1), out, progress=False)
    # the CLI: allowed changes are applied and logged
    argv = ["train", "--resume", "--out", str(out), "--lr", "1e-4", "--epochs", "2"]
    assert cli.main([*argv, "--no-progress"]) == 0
    saved = checkpoint.load(out / "checkpoint.pt")
    assert saved["trainer"]["epoch"] == 2 and saved["train_config"]["lr"] == 1e-4
    assert saved["trainer"]["optimizer"]["param_groups"][0]["lr"] == 1e-4
    log = (out / "resume.log").read_text()
    assert "resumed after epoch 1: epochs 1 -> 2, lr 0.001 -> 0.0001" in log
    assert "lr 0.001 -> 0.0001" in capsys.readouterr().err
    # no --epochs: the saved number (2), not the option's default (10)
    assert cli.main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["epoch"] == 2
    assert len((out / "resume.log").read_text().splitlines()) == 1  # nothing changed


def test_the_trainer_checks_its_data_against_the_likelihood():
    x = torch.rand(64, 12)  # grey levels
    bernoulli = Trainer(
        models.VAEModel(12, 2, (8,)), guides.NormalGuide(12, 2, (8,)), TrainConfig(), CPU
    )
    with pytest.raises(ValueError, match="Bernoulli"):
        bernoulli.fit(x, epochs=1, progress=False)
    bernoulli.fit(x, epochs=1, dynamic=True, progress=False)  # drawn as 0/1 per batch: fine
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        bernoulli.fit(x * 3, epochs=2, dynamic=True, progress=False)
    cb = models.VAEModel(12, 2, (8,), likelihood=likelihoods.ContinuousBernoulli())
    trainer = Trainer(cb, guides.NormalGuide(12, 2, (8,)), TrainConfig(), CPU)
    with pytest.raises(ValueError, match="support|\\[0, 1\\]"):
        trainer.fit(x + 1, epochs=1, progress=False)


def test_a_swallowed_ctrl_c_still_stops_training():
    """The CLI's SIGINT handler remembers the interrupt, so training stops at the next step
    even when the KeyboardInterrupt it raised was caught and discarded on the way up."""

    class Swallows:
        def on_step(self, trainer: Trainer) -> None:
            if trainer.step == 3:
                # a callback whose caller discards exceptions
                with contextlib.suppress(KeyboardInterrupt):
                    runtime.on_interrupt(signal.SIGINT, None)

    trainer = Trainer(
        models.VAEModel(12, 2, (8,)), guides.NormalGuide(12, 2, (8,)), TrainConfig(), CPU
    )
    x = torch.rand(64, 12).bernoulli()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x, epochs=5, hooks=[Swallows()], progress=False)
    assert trainer.step == 3
    runtime.check_interrupt()  # acted on once, not again
    trainer.fit(x, epochs=1, progress=False)


def test_ctrl_c_is_one_line_and_keeps_the_last_epoch(tiny_mnist_dir, tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.pt"
    # Epochs of this tiny run take milliseconds with the traced step: enough of them that the
    # run cannot end before the signal lands, even when the test is descheduled (CI once saw
    # all 50 epochs finish first, and exit 0).
    proc = subprocess.Popen(
        _train_cmd(tiny_mnist_dir, out, 100_000),
        cwd=REPO,
        env={**os.environ, "PYRO_VAE_DATA": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    epoch = checkpoint.load(ckpt)["trainer"]["epoch"]
    assert last == (
        f"pyro-vae: interrupted; {ckpt} holds epoch {epoch}, the last finished one: continue "
        f"with pyro-vae train --resume --out {out}"
    )


def test_long_work_reports_progress_in_logs(capsys):
    """Where stderr is not a terminal (pytest captures it), progress is a plain line every few
    seconds; with progress=False, nothing."""
    from pyro_vae.runtime import LineProgress, progress_bar

    assert isinstance(progress_bar(range(3), desc="d", unit="u", progress=None), LineProgress)
    quiet = progress_bar(range(3), desc="d", unit="u", progress=False)
    assert list(quiet) == [0, 1, 2] and capsys.readouterr().err == ""
    bar = LineProgress(range(4), total=4, desc="log p(x), k=5000", unit="chunks", interval=0)
    bar.set_postfix(loss="93.10")
    assert list(bar) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "log p(x), k=5000: 1/4 chunks (25%), loss 93.10"
    assert lines[-1] == "log p(x), k=5000: 4/4 chunks (100%), loss 93.10"


def test_a_run_is_never_scored_or_resumed_on_other_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = tmp_path / "mine.npy"
    np.save(images, rng.integers(0, 256, (300, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    train = ["train", "--dataset", f"array:{images}", "--hidden", "16", "--z-dim", "2"]
    assert cli.main([*train, "--epochs", "1", "--ll-samples", "0", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.pt"
    assert cli.main(["evaluate", str(ckpt), "--samples", "5"]) == 0
    before = ckpt.read_bytes()
    np.save(images, rng.integers(0, 256, (300, 8, 8), dtype=np.uint8))  # same shape, new data
    capsys.readouterr()
    for argv in (
        ["evaluate", str(ckpt), "--samples", "5"],
        ["train", "--resume", "--out", str(out), "--epochs", "2"],
    ):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("pyro-vae: error: the data found for this run")
        assert "differ from those it was trained on" in err and "\n" not in err
    assert ckpt.read_bytes() == before
    assert cli.main(["sample", str(ckpt), "--n", "4"]) == 0  # needs no data: fine


def test_a_relative_data_dir_is_recorded_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert TrainConfig(data_dir="data").data_dir == str(tmp_path / "data")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize(
    "changes",
    [
        {"elbo": "trace"},
        {"elbo": "meanfield"},
        {"elbo": "jit-trace"},
        {"elbo": "jit-meanfield"},
        {"elbo": "iwae", "num_particles": 3},
        {"elbo": "iwae-dreg", "num_particles": 3},
        {"elbo": "trace", "beta": 2.0, "warmup_epochs": 2},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_resume_is_bit_exact_for_every_objective(changes, config, tmp_path):
    """Two epochs straight against one, a new process's worth of state (the checkpoint), and
    one more: every tensor and every CSV row the same."""
    config = replace(config, epochs=2, **changes)
    straight, _ = runs.train(SMALL, config, tmp_path / "a", progress=False)
    runs.train(SMALL, replace(config, epochs=1), tmp_path / "b", progress=False)
    runs.train(None, None, tmp_path / "b", resume=True, progress=False)  # at its end: a no-op
    resumed, _ = runs.train(SMALL, config, tmp_path / "b", resume=True, progress=False)
    a, b = straight.trainer.state_dict(), resumed.trainer.state_dict()
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["modules"].items():
        assert torch.equal(value, b["modules"][key]), key
    states = zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True)
    for sa, sb in states:
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _rows(tmp_path / "a" / "metrics.csv") == _rows(tmp_path / "b" / "metrics.csv")


KILLED_MID_WRITE = """
import os, signal, sys, torch
from pyro_vae import checkpoint

def dies(obj, f):
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dies
checkpoint.save(sys.argv[1], {"w": torch.zeros(3)})
"""


def test_kill_9_inside_a_checkpoint_write_keeps_the_previous_file(tmp_path):
    path = checkpoint.save(tmp_path / "checkpoint.pt", {"w": torch.ones(3)})
    before = path.read_bytes()
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(path)], cwd=REPO)
        assert done.returncode == -signal.SIGKILL
        assert path.read_bytes() == before
        assert torch.equal(checkpoint.load(path)["w"], torch.ones(3))
    # each write cleared the file of the writer killed before it: only the last one is left
    assert len(list(tmp_path.glob(".checkpoint.pt.tmp-*"))) == 1
    checkpoint.save(path, {"w": torch.full((3,), 2.0)})  # the next write clears them
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
