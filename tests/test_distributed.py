"""torchrun runs: 2 gloo processes on this CPU (localhost, bounded in time), against one."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_vae import checkpoint, distributed
from pyro_vae.config import TrainConfig
from pyro_vae.distributed import World

from . import ddp_step

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={_port()}",
        *args,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYRO_VAE_DATA": "", "OMP_NUM_THREADS": "1"}


def _train(data_dir: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "-m",
        "pyro_vae",
        "train",
        "--data-dir",
        str(data_dir),
        "--train-size",
        "1000",
        "--test-size",
        "64",
        "--z-dim",
        "3",
        "--hidden",
        "32",
        "--batch-size",
        "50",
        "--ll-samples",
        "50",
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def _run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("n", [0, 1, 7, 100, 101, 103])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_ranks_shards_tile_each_epoch(n, size):
    perm = torch.randperm(n)
    parts = [list(distributed.shard_rows(perm, 10, World(rank, size))) for rank in range(size)]
    steps = {len(p) for p in parts}
    assert len(steps) == 1 and steps.pop() == distributed.num_sharded_batches(n, 10, World(0, size))
    seen = torch.cat([torch.cat(p) if p else torch.empty(0, dtype=torch.long) for p in parts])
    assert (
        len(set(seen.tolist())) == len(seen) == distributed.num_sharded_data(n, 10, World(0, size))
    )
    assert n - len(seen) < size  # only a last global batch smaller than the ranks is left out
    for i in range(len(parts[0])):  # global batch i: the ranks' parts are its consecutive pieces
        joined = torch.cat([p[i] for p in parts])
        assert torch.equal(joined, perm[i * 10 * size : i * 10 * size + len(joined)])


def test_one_ddp_step_equals_one_step_on_the_concatenated_batch(tmp_path):
    saved = tmp_path / "params.pt"
    done = _run(torchrun(str(REPO / "tests" / "ddp_step.py"), str(saved)), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    x = ddp_step.batch()
    one = ddp_step.step(x, TrainConfig(batch_size=x.shape[0], lr=0.05))
    two = torch.load(saved, weights_only=True)
    moved = 0.0
    for a, b in zip(one.loss.parameters(), two, strict=True):
        assert torch.allclose(a.detach(), b, rtol=1e-5, atol=1e-6)
        moved += float((a.detach() - b).abs().max())
    assert moved < 1e-4


@pytest.fixture(scope="module")
def two_process_run(tiny_mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = _run(torchrun(*_train(tiny_mnist_dir, out, 3)))
    return out, done


def test_a_two_process_run_trains_writes_once_and_scores_like_one_process(
    two_process_run, tiny_mnist_dir
):
    out, done = two_process_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (gloo), batch 50 each, 100 per step" in done.stderr
    assert done.stderr.count("output folder:") == 2  # rank 0 only: before and after
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_elbo"]) > float(rows[0]["train_elbo"])  # it learns
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["step"] == 3 * 10  # 1000 / 100
    ours = json.loads((out / "evaluation.json").read_text())
    again = _run(
        [
            sys.executable,
            "-m",
            "pyro_vae",
            "evaluate",
            str(out / "checkpoint.pt"),
            "--samples",
            "50",
            "--data-dir",
            str(tiny_mnist_dir),
            "--json",
            str(out / "one.json"),
        ]
    )
    assert again.returncode == 0, again.stderr[-2000:]
    one = json.loads((out / "one.json").read_text())
    assert one["n_data"] == ours["n_data"] == 64
    error = math.hypot(ours["log_likelihood_stderr"], one["log_likelihood_stderr"])
    assert abs(ours["log_likelihood"] - one["log_likelihood"]) < 4 * error + 0.5
    assert abs(ours["elbo"] - one["elbo"]) < 0.05 * abs(one["elbo"])


def test_resume_across_world_sizes(two_process_run, tiny_mnist_dir):
    out, done = two_process_run
    assert done.returncode == 0, done.stderr[-3000:]
    single = _run([sys.executable, *_train(tiny_mnist_dir, out, 4, "--resume")])
    assert single.returncode == 0, single.stderr[-2000:]
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["epoch"] == 4
    again = _run(torchrun(*_train(tiny_mnist_dir, out, 5, "--resume")))
    assert again.returncode == 0, again.stderr[-2000:]
    saved = checkpoint.load(out / "checkpoint.pt")["trainer"]
    assert saved["epoch"] == 5 and [r["epoch"] for r in saved["history"]] == [1, 2, 3, 4, 5]
    assert saved["step"] == 3 * 10 + 20 + 10  # 100 data per step in pairs, 50 alone


def test_a_killed_rank_ends_the_run_with_one_line_and_keeps_the_checkpoint(
    tiny_mnist_dir, tmp_path
):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.pt"
    proc = subprocess.Popen(
        torchrun(*_train(tiny_mnist_dir, out, 500, "--dist-timeout", "20")),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)  # one of the two ranks
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("pyro-vae:")]
    assert len(ours) == 1, stderr[-3000:]
    assert "checkpoint.pt holds epoch" in ours[0] and "--resume" in ours[0]
    saved = checkpoint.load(ckpt)  # intact
    assert 1 <= saved["trainer"]["epoch"] < 500


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_objectives_ddp_cannot_wrap_are_refused_in_one_line(tiny_mnist_dir, tmp_path):
    done = _run(torchrun(*_train(tiny_mnist_dir, tmp_path / "run", 1, "--elbo", "iwae")))
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("pyro-vae:")]
    assert ours and all("DistributedDataParallel cannot wrap" in line for line in ours)


def test_a_hung_rank_stops_the_others_within_the_timeout(tiny_mnist_dir, tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.pt"
    proc = subprocess.Popen(
        torchrun(*_train(tiny_mnist_dir, out, 500, "--dist-timeout", "5")),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.05)
        workers = _children(proc.pid)
        os.kill(max(workers), signal.SIGSTOP)  # hangs: alive, never answers
        stopped = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
        waited = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    ours = [line for line in stderr.splitlines() if line.startswith("pyro-vae:")]
    assert len(ours) == 1 and "lost the other processes" in ours[0], stderr[-3000:]
    assert "--dist-timeout" in ours[0] and "checkpoint.pt holds epoch" in ours[0]
    assert waited < 90
    assert 1 <= checkpoint.load(ckpt)["trainer"]["epoch"] < 500
