"""torchrun ranks started with different options or data: every rank refuses with the same
one line, exit 1, nothing written, well within --dist-timeout (2 gloo processes on this CPU,
started as torchrun starts them, each with its own command line)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyro_vae import checkpoint, distributed
from pyro_vae.distributed import RankMismatch, World

from .conftest import write_idx
from .test_bad_inputs import snapshot
from .test_distributed import REPO, _env, _port, _train, torchrun

TIMEOUT = 60  # --dist-timeout: a rank that waited for the others would fail the time bound


def _ranks(argvs: list[list[str]], cwds: list[Path] | None = None) -> list[tuple[int, str]]:
    """Start one process per command line as torchrun would (RANK, WORLD_SIZE, ...): each
    one's exit status and stderr. The processes are killed if they run past 3 minutes."""
    port, n = _port(), len(argvs)
    procs = [
        subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwds[rank] if cwds else REPO,
            env={
                **_env(),
                "PYTHONPATH": str(REPO),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": str(n),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(n),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, argv in enumerate(argvs)
    ]
    try:
        return [(p.wait(timeout=180), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def one_line_each(done: list[tuple[int, str]]) -> list[str]:
    """Every rank ended with exit status 1 and one ``pyro-vae: error:`` line, no traceback:
    the lines, in rank order."""
    lines = []
    for rank, (status, err) in enumerate(done):
        ours = [line for line in err.splitlines() if line.startswith("pyro-vae:")]
        assert status == 1, f"rank {rank}: {err[-3000:]}"
        assert "Traceback" not in err, f"rank {rank}: {err[-3000:]}"
        assert len(ours) == 1 and ours[0].startswith("pyro-vae: error: "), err[-3000:]
        lines.append(ours[0])
    return lines


def refused_alike(argvs: list[list[str]], match: str, *untouched: Path, cwds=None) -> str:
    """Every rank: exit status 1, one line (the same on each) matching ``match``, no
    traceback; the files under ``untouched`` unchanged; done well within --dist-timeout."""
    before = snapshot(*untouched)
    started = time.monotonic()
    lines = one_line_each(_ranks(argvs, cwds))
    took = time.monotonic() - started
    assert len(set(lines)) == 1, lines
    assert "torchrun ranks were started with different" in lines[0]
    assert re.search(match, lines[0]), lines[0]
    assert snapshot(*untouched) == before
    assert took < TIMEOUT - 10, f"{took:.0f} s: a rank waited for the others"
    return lines[0]


def _cmd(data_dir: Path, out: Path | str, *extra: str) -> list[str]:
    return _train(data_dir, out, 1, "--dist-timeout", str(TIMEOUT), *extra)


@pytest.fixture(scope="module")
def same_and_other_mnist(tiny_mnist_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A second folder holding the same MNIST files (links: another --data-dir, the same
    data) and a third whose test images differ in one pixel row."""
    root = tmp_path_factory.mktemp("copies")
    same, other = root / "same", root / "other"
    for folder in (same, other):
        folder.mkdir()
        for f in tiny_mnist_dir.iterdir():
            (folder / f.name).symlink_to(f)
    (other / "t10k-images-idx3-ubyte.gz").unlink()
    images = np.zeros((10000, 28, 28), np.uint8)
    images[:, 3, :] = 255
    write_idx(other / "t10k-images-idx3-ubyte.gz", images)
    return same, other


@pytest.fixture(scope="module")
def matching_run(tiny_mnist_dir, same_and_other_mnist, tmp_path_factory) -> Path:
    """Two ranks started alike (rank 1 finds the same data under another --data-dir) train."""
    out = tmp_path_factory.mktemp("alike") / "run"
    same, _ = same_and_other_mnist
    done = _ranks([_cmd(tiny_mnist_dir, out), _cmd(same, out)])
    for rank, (status, err) in enumerate(done):
        assert status == 0, f"rank {rank}: {err[-3000:]}"
    return out


def test_ranks_started_alike_still_train(matching_run):
    with open(matching_run / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1]
    assert checkpoint.load(matching_run / "checkpoint.pt")["trainer"]["step"] == 10  # 1000 / 100


def test_ranks_with_several_different_options_are_refused_in_one_line(tiny_mnist_dir, tmp_path):
    out = tmp_path / "run"
    line = refused_alike(
        [_cmd(tiny_mnist_dir, out), _cmd(tiny_mnist_dir, out, "--seed", "7", "--lr", "0.01")],
        r"options: --lr is 0\.001 on rank 0 and 0\.01 on rank 1; --seed is 0 on rank 0 and 7 "
        r"on rank 1: start every rank with the same command$",
        tmp_path,
    )
    assert not out.exists(), line


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--z-dim", "4"], "--z-dim is 3 on rank 0 and 4 on rank 1"),  # was a traceback
        (["--train-size", "900"], "--train-size is 1000 on rank 0 and 900 on rank 1"),  # a hang
        (["--hidden", "32", "16"], "--hidden is 32 on rank 0 and 32 16 on rank 1"),
    ],
)
def test_a_rank_with_another_option_is_refused_in_one_line(tiny_mnist_dir, tmp_path, extra, named):
    out = tmp_path / "run"
    refused_alike(
        [_cmd(tiny_mnist_dir, out), _cmd(tiny_mnist_dir, out, *extra)],
        f"options: {named}: start",
        tmp_path,
    )
    assert not out.exists()


def test_a_relative_out_from_another_folder_is_another_folder(tiny_mnist_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    refused_alike(
        [_cmd(tiny_mnist_dir, "run"), _cmd(tiny_mnist_dir, "run")],
        f"--out is {first / 'run'} on rank 0 and {second / 'run'} on rank 1",
        tmp_path,
        cwds=[first, second],
    )
    assert not (first / "run").exists() and not (second / "run").exists()


def test_a_rank_with_other_data_is_refused_in_one_line(
    tiny_mnist_dir, same_and_other_mnist, tmp_path
):
    out = tmp_path / "run"
    _, other = same_and_other_mnist
    refused_alike(
        [_cmd(tiny_mnist_dir, out), _cmd(other, out)],
        r"different data: rank 0 loaded mnist \(1000 train / 64 test, fingerprint \w+\) from "
        rf".*{tiny_mnist_dir.name}.* and rank 1 loaded mnist \(1000 train / 64 test, "
        rf"fingerprint \w+\) from .*{other.name}.*: give every rank the same data",
        tmp_path,
    )
    assert not out.exists()  # rank 0 made the folder before loading the data, then removed it


def test_a_rank_that_cannot_load_its_data_is_named_by_the_others(tiny_mnist_dir, tmp_path):
    out, empty = tmp_path / "run", tmp_path / "empty"
    empty.mkdir()
    started = time.monotonic()
    zero, one = one_line_each(_ranks([_cmd(tiny_mnist_dir, out), _cmd(empty, out)]))
    assert time.monotonic() - started < TIMEOUT - 10
    assert re.match(r"pyro-vae: error: mnist IDX files .* not found; looked in: .*empty", one)
    assert zero.startswith("pyro-vae: error: torchrun rank 1 could not load its data (mnist IDX ")
    assert zero.endswith("): give every rank the same data (--dataset, --data-dir)"), zero
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_under_torchrun_a_rank_with_another_option_is_refused_alike(tiny_mnist_dir, tmp_path):
    wrapper = tmp_path / "other_seed_on_rank_1.py"
    wrapper.write_text(
        "import os, runpy, sys\n"
        "extra = ['--seed', '5'] if os.environ['LOCAL_RANK'] == '1' else []\n"
        "sys.argv = ['pyro_vae', *sys.argv[1:], *extra]\n"
        "runpy.run_module('pyro_vae', run_name='__main__')\n"
    )
    out = tmp_path / "run"
    done = subprocess.run(
        torchrun(str(wrapper), *_cmd(tiny_mnist_dir, out)[2:]),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1
    ours = [line for line in done.stderr.splitlines() if line.startswith("pyro-vae:")]
    line = (
        "pyro-vae: error: torchrun ranks were started with different options: --seed is 0 on "
        "rank 0 and 5 on rank 1: start every rank with the same command"
    )
    # torchrun ends the other workers once one has failed: one of them may be stopped before
    # it prints its line (seldom: both print as soon as the all-gather returns)
    assert line in ours and len(ours) == 2, done.stderr[-3000:]
    assert all(o == line or o.startswith("pyro-vae: terminated (SIGTERM)") for o in ours), ours
    assert str(REPO / "pyro_vae") not in done.stderr  # torchrun's own report, no traceback of ours
    assert not out.exists()


def test_a_resumed_rank_with_another_option_leaves_the_run_as_it_was(
    tiny_mnist_dir, matching_run, tmp_path
):
    out = tmp_path / "run"
    shutil.copytree(matching_run, out)
    line = refused_alike(
        [
            _cmd(tiny_mnist_dir, out, "--resume", "--epochs", "2"),
            _cmd(tiny_mnist_dir, out, "--resume", "--epochs", "3"),
        ],
        "--epochs is 2 on rank 0 and 3 on rank 1",
        out,
    )
    assert not (out / "resume.log").exists(), line
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["epoch"] == 1


# -- the line itself, for more ranks than this machine starts --------------------------------


def test_ranks_sharing_a_value_are_named_together(monkeypatch):
    every = [{"--lr": "0.001", "--seed": "0"}, {"--lr": "0.01", "--seed": "0"}]
    every += [{"--lr": "0.001", "--seed": "0"}, {"--lr": "0.1"}]
    monkeypatch.setattr(distributed, "_WORLD", World(0, 4))
    monkeypatch.setattr(distributed, "all_gather_object", lambda obj: every)
    with pytest.raises(RankMismatch) as e:
        distributed.check_same_start(every[0])
    assert str(e.value) == (
        "torchrun ranks were started with different options: --lr is 0.001 on ranks 0, 2, "
        "0.01 on rank 1 and 0.1 on rank 3; --seed is 0 on ranks 0, 1, 2 and absent on rank 3: "
        "start every rank with the same command"
    )
    monkeypatch.setattr(distributed, "all_gather_object", lambda obj: [every[0]] * 4)
    distributed.check_same_start(every[0])  # alike: nothing to say


def test_one_process_compares_nothing(tmp_path):
    assert distributed.world().size == 1
    options = distributed.start_options((), tmp_path / "run", None)
    assert options["--out"] == str(tmp_path / "run") and options["--resume"] == "off"
    distributed.check_same_start(options)  # no collective without a process group
    assert os.environ.get("WORLD_SIZE", "1") == "1"
