"""Faults around run folders and checkpoints: two processes on one folder, signals and full
disks in the middle of a checkpoint write, and damaged, stripped or incomplete checkpoint
files. Each ends in one line (or works), and nothing saved is lost."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pickle
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import checkpoint, cli, runfolder
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from tests.conftest import REPO
from tests.test_bad_inputs import refused, snapshot

SMALL = ModelConfig(z_dim=2, hidden=(8,))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """300 random 8x8 images: a data set that loads and trains in moments."""
    path = tmp_path_factory.mktemp("data") / "images.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (300, 8, 8), dtype=np.uint8))
    return path


@pytest.fixture
def config(images) -> TrainConfig:
    return TrainConfig(dataset=f"array:{images}", epochs=1, batch_size=32, ll_samples=0)


@pytest.fixture(scope="module")
def good_run(images, tmp_path_factory) -> Path:
    """A finished one-epoch run (not to be changed by the tests)."""
    out = tmp_path_factory.mktemp("runs") / "good"
    config = TrainConfig(dataset=f"array:{images}", epochs=1, batch_size=32, ll_samples=0)
    runs.train(SMALL, config, out, progress=False)
    return out


def train_argv(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        f"array:{images}",
        "--batch-size",
        "32",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--ll-samples",
        "0",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def metrics_epochs(out: Path) -> list[str]:
    with open(out / "metrics.csv") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def leftovers(out: Path) -> list[str]:
    """Temporary and lock files left in ``out``."""
    return sorted(p.name for p in out.iterdir() if ".tmp" in p.name or p.name == runfolder.LOCK)


# -- one process per run folder ----------------------------------------------------------------


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen]:
    """A process that runs (its pid stands for another run holding a folder)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def hold_as(folder: Path, pid: int) -> int:
    """Hold ``folder`` as another process would: ``flock`` on its own descriptor of the lock
    file (a second descriptor conflicts even within one process), naming ``pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / runfolder.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid} {socket.gethostname()}\n".encode())
    return fd


@pytest.mark.parametrize("case", ["new run", "run with a checkpoint", "resume", "experiment"])
def test_a_folder_held_by_another_process_is_refused_naming_it(
    case, other_process, good_run, images, tmp_path, capsys
):
    import shutil

    out = tmp_path / "run"
    if case != "new run":
        shutil.copytree(good_run, out)
    fd = hold_as(out, other_process.pid)
    argv = {
        "new run": train_argv(images, out),
        "run with a checkpoint": train_argv(images, out),
        "resume": ["train", "--resume", "--out", str(out), "--epochs", "2", "--no-progress"],
        "experiment": ["run", "reconstructions", "--smoke", "--out", str(out)],
    }[case]
    try:
        line = refused(
            capsys,
            argv,
            rf"{re.escape(str(out))} is in use by process {other_process.pid} on "
            r"\S+: wait for it to finish, or choose another --out",
            out,
        )
    finally:
        os.close(fd)
    assert "Traceback" not in line


def test_saving_a_run_into_a_held_folder_is_refused(other_process, good_run, tmp_path):
    run = runs.load(good_run / "checkpoint.pt", device="cpu", dataset=False)
    fd = hold_as(tmp_path / "copy", other_process.pid)
    try:
        with pytest.raises(runfolder.FolderBusy, match=f"in use by process {other_process.pid}"):
            run.save(tmp_path / "copy")
    finally:
        os.close(fd)
    assert [p.name for p in (tmp_path / "copy").iterdir()] == [runfolder.LOCK]


@pytest.mark.slow  # two processes; in-process twin: test_a_folder_held_by_another_process...
def test_two_concurrent_trainings_into_one_folder(images, tmp_path):
    """Two real processes: the second is refused in one line naming the first, which goes on
    undisturbed; the lock goes when the first ends (here by Ctrl-C)."""
    out, ckpt = tmp_path / "twin", tmp_path / "twin" / "checkpoint.pt"
    env = {**os.environ, "PYRO_VAE_DATA": ""}
    # python -m pyro_vae: the run's options, with epochs enough to outlast the second start
    base = [sys.executable, "-m", "pyro_vae", *train_argv(images, out)]
    first = subprocess.Popen(
        [*base, "--epochs", "100000", "--seed", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / runfolder.LOCK).exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run did not start in 120 s"
            time.sleep(0.02)
        second = subprocess.run(
            [*base, "--epochs", "1", "--seed", "2"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.poll() is None, "the first run ended early"
        while not ckpt.exists() and first.poll() is None:  # it goes on: an epoch is saved
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert lines == [
        f"pyro-vae: error: {out} is in use by process {first.pid} on {socket.gethostname()}: "
        "wait for it to finish, or choose another --out"
    ]
    assert first.returncode == 130, err
    saved = checkpoint.load(ckpt)  # the first run's, whole
    assert saved["train_config"]["seed"] == 1 and saved["trainer"]["epoch"] >= 1
    assert metrics_epochs(out) == [str(e) for e in range(1, saved["trainer"]["epoch"] + 1)]
    assert leftovers(out) == []  # released on the signal


def test_a_stale_lock_of_a_dead_process_is_taken_over(config, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / runfolder.LOCK).write_text(f"{dead.pid} {socket.gethostname()}\n")
    runs.train(SMALL, config, out, progress=False)
    err = capsys.readouterr().err
    assert f"note: {out / runfolder.LOCK} was left by process {dead.pid}" in err
    assert "which no longer runs: taken over" in err
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["epoch"] == 1
    assert leftovers(out) == []


def test_an_unheld_lock_naming_a_live_process_is_taken_over(config, other_process, tmp_path):
    """A lock file copied with its folder names a process that runs, but holds no lock on this
    file: the flock decides, not the pid."""
    out = tmp_path / "copied"
    out.mkdir()
    (out / runfolder.LOCK).write_text(f"{other_process.pid} {socket.gethostname()}\n")
    runs.train(SMALL, config, out, progress=False)
    assert leftovers(out) == []


def test_the_lock_is_released_after_an_error(config, tmp_path, capsys):
    out = tmp_path / "run"
    runs.train(SMALL, config, out, progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        runs.train(SMALL, config, out, progress=False)
    assert leftovers(out) == []
    with pytest.raises(ValueError, match="needs its model_config"):  # a new folder: removed
        runs.train(None, None, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()


def test_one_process_may_hold_a_folder_again(tmp_path):
    folder = tmp_path / "f"
    with runfolder.FolderLock(folder):
        with runfolder.FolderLock(folder):  # an experiment holding the run it trains
            pass
        assert (folder / runfolder.LOCK).read_text().split()[0] == str(os.getpid())
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("rank, locks", [("0", True), ("1", False), ("3", False)])
def test_only_rank_0_of_a_torchrun_run_locks(rank, locks, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", rank)
    assert runfolder.writes_files() is locks


# -- signals inside a checkpoint write ----------------------------------------------------------


class Signalling:
    """A file that sends ``signum`` to this process in the middle of torch.save's writes."""

    def __init__(self, f: io.BufferedWriter, signum: int, at: int = 3) -> None:
        self.f, self.signum, self.at, self.calls = f, signum, at, 0

    def write(self, data: bytes) -> int:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
            time.sleep(0.01)  # let it land while the write is under way
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def signal_inside_writes(monkeypatch, signum: int, nth: int = 1) -> list[int]:
    """Make the ``nth`` and later torch.save calls signal half-way through their bytes;
    returns the list of calls made so far (its length)."""
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        target = Signalling(f, signum) if len(calls) >= nth else f
        return real(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


class Stop(Exception):
    pass


@pytest.fixture
def term_raises() -> Iterator[None]:
    def stop(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGTERM, stop)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    "signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Stop)]
)
def test_a_signal_inside_a_checkpoint_write_waits_for_it(
    signum, raised, term_raises, tmp_path, monkeypatch
):
    path = checkpoint.save(tmp_path / "c.pt", {"w": torch.ones(1000)})
    signal_inside_writes(monkeypatch, signum)
    with pytest.raises(raised):
        checkpoint.save(path, {"w": torch.full((1000,), 2.0)})
    assert torch.equal(checkpoint.load(path)["w"], torch.full((1000,), 2.0))  # whole, the new
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert signal.getsignal(signum) is not checkpoint._hold  # the handlers are back


@pytest.mark.parametrize(
    "signum, status, said",
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ],
)
def test_a_signal_inside_a_runs_checkpoint_write_is_one_line(
    signum, status, said, images, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    signal_inside_writes(monkeypatch, signum, nth=2)  # in epoch 2's checkpoint
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(train_argv(images, out, "--epochs", "4")) == status
    finally:
        signal.signal(signal.SIGTERM, previous)
    lines = capsys.readouterr().err.strip().splitlines()
    ckpt = out / "checkpoint.pt"
    assert lines[-1] == (
        f"pyro-vae: {said}; {ckpt} holds epoch 2, the last finished one: continue with "
        f"pyro-vae train --resume --out {out}"
    )
    assert checkpoint.load(ckpt)["trainer"]["epoch"] == 2  # the write went through, whole
    assert metrics_epochs(out) == ["1", "2"]  # and the files written with it
    assert leftovers(out) == []


SLOW_WRITER = """
import os, sys, time, torch
real = torch.save

class Slow:
    def __init__(self, f):
        self.f, self.calls = f, 0
    def write(self, data):
        self.calls += 1
        if self.calls == 3:
            open(os.environ["INSIDE"], "w").close()  # the test's cue: signal now
            time.sleep(2)
        return self.f.write(data)
    def flush(self):
        self.f.flush()

def save(obj, f, *args, **kwargs):
    return real(obj, Slow(f), *args, **kwargs)

torch.save = save
from pyro_vae.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a process; in-process twin: test_a_signal_inside_a_runs_checkpoint_write...
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_from_outside_during_a_slow_write(signum, status, images, tmp_path):
    out, inside = tmp_path / "run", tmp_path / "inside"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, *train_argv(images, out, "--epochs", "5")],
        cwd=REPO,
        env={**os.environ, "PYRO_VAE_DATA": "", "INSIDE": str(inside)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not inside.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint write began in 120 s"
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "enforce fail" not in err
    ckpt = out / "checkpoint.pt"
    assert f"{ckpt} holds epoch 1, the last finished one" in err.strip().splitlines()[-1]
    assert checkpoint.load(ckpt)["trainer"]["epoch"] == 1
    assert leftovers(out) == []


def test_signals_are_held_once_for_nested_writes_and_not_off_the_main_thread(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with checkpoint.signals_held():
            with checkpoint.signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            done = True  # the inner block ended: still held
        pytest.fail("not delivered")  # pragma: no cover
    assert done
    errors: list[BaseException] = []

    def write() -> None:
        try:
            checkpoint.save(tmp_path / "t.pt", {"w": torch.ones(2)})
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert errors == [] and checkpoint.load(tmp_path / "t.pt")["w"].sum() == 2


# -- full disks and `ulimit -f` -----------------------------------------------------------------


def disk_full_at(monkeypatch, nth: int) -> None:
    """torch.save fails from its ``nth`` call on, as it does on a full disk: a RuntimeError
    whose context is the OSError."""
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) >= nth:
            f.write(b"part of a checkpoint")
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                raise RuntimeError(
                    "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
                ) from None
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_in_epoch_2_keeps_epoch_1(images, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    disk_full_at(monkeypatch, 2)
    ckpt = out / "checkpoint.pt"
    capsys.readouterr()
    assert cli.main(train_argv(images, out, "--epochs", "3")) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        f"pyro-vae: error: could not write {ckpt} (No space left on device): free space on its "
        "disk (or raise `ulimit -f`), or choose another folder; checkpoint.pt still holds "
        "epoch 1: continue it with --resume"
    )
    assert checkpoint.load(ckpt)["trainer"]["epoch"] == 1
    assert metrics_epochs(out) == ["1"]  # not ahead of the checkpoint
    assert leftovers(out) == []


def test_a_full_disk_in_the_first_epoch_says_nothing_was_saved(
    images, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    disk_full_at(monkeypatch, 1)
    capsys.readouterr()
    assert cli.main(train_argv(images, out, "--epochs", "2")) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"pyro-vae: error: could not write {out / 'checkpoint.pt'} (No space left on device): "
        "free space on its disk (or raise `ulimit -f`), or choose another folder; no epoch "
        "has been saved yet"
    )
    assert "Traceback" not in err
    assert not out.exists()  # nothing was left in it


@pytest.mark.slow  # a process; in-process twin: test_a_full_disk_in_epoch_2_keeps_epoch_1
def test_ulimit_f_during_a_resumed_run(config, tmp_path):
    """A real file-size limit (SIGXFSZ ignored, so writes fail with EFBIG) on a resumed run:
    the start-up probe (64 KiB) passes, the checkpoint (~0.4 MB) cannot be written."""
    out = tmp_path / "run"
    runs.train(ModelConfig(z_dim=2, hidden=(256,)), config, out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    assert len(before) > 200 * 1024

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))

    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--resume", "--out", str(out), "--epochs", "2"],
        cwd=REPO,
        env={**os.environ, "PYRO_VAE_DATA": ""},
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"pyro-vae: error: could not write {out / 'checkpoint.pt'} (File too large)"
    )
    assert last.endswith("checkpoint.pt still holds epoch 1: continue it with --resume")
    assert "Traceback" not in done.stderr
    assert (out / "checkpoint.pt").read_bytes() == before
    assert metrics_epochs(out) == ["1"]
    assert leftovers(out) == []


@pytest.mark.parametrize("writer", ["metrics", "json", "checkpoint"])
def test_a_failed_small_write_keeps_the_old_file_and_no_temporary(writer, tmp_path, monkeypatch):
    path = tmp_path / {"metrics": "metrics.csv", "json": "e.json", "checkpoint": "c.pt"}[writer]
    write = {
        "metrics": lambda: runfolder.write_metrics(path, [{"epoch": 1, "train_elbo": -1.0}]),
        "json": lambda: runfolder.write_json(path, {"elbo": -1.0}),
        "checkpoint": lambda: checkpoint.save(path, {"w": torch.ones(2)}),
    }[writer]
    write()
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        checkpoint.WriteError,
        match=rf"could not write {re.escape(str(path))} "
        r"\(No space left on device\): free space",
    ):
        write()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_json_into_a_missing_folder_names_the_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "missing" / "e.json"
    with pytest.raises(checkpoint.WriteError) as err:
        runfolder.write_json(path, {"elbo": -1.0})
    assert str(err.value) == (
        f"could not write {path} (No such file or directory): its folder does not exist: make "
        "it, or choose another path"
    )
    assert list(tmp_path.iterdir()) == []


# -- loading: every damaged file is one CheckpointError line ------------------------------------


def load_refused(path: Path, match: str = "") -> str:
    with pytest.raises(checkpoint.CheckpointError) as err:
        runfolder.load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    assert re.search(match, message), message
    return message


def test_random_and_pickle_prefixed_bytes_are_one_line(tmp_path):
    rng = np.random.default_rng(0)
    prefixes = [b"", b"\x80\x02", b"\x80\x04\x95", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."]
    prefixes += [b"PK\x03\x04", pickle.dumps({"format": checkpoint.FORMAT})[:-1]]
    path = tmp_path / "fuzz.pt"
    for i in range(240):
        prefix = prefixes[i % len(prefixes)]
        path.write_bytes(prefix + rng.bytes(int(rng.integers(0, 400))))
        load_refused(path)


def test_mutated_and_truncated_checkpoints_are_refused_or_unchanged(good_run, tmp_path):
    good = (good_run / "checkpoint.pt").read_bytes()
    original = checkpoint.load(good_run / "checkpoint.pt")["checksum"]
    rng = np.random.default_rng(1)
    path = tmp_path / "c.pt"
    for at in rng.integers(0, len(good), 40):
        path.write_bytes(good[:at])
        load_refused(path)
    for _ in range(80):
        raw = bytearray(good)
        for at in rng.integers(0, len(raw), int(rng.integers(1, 4))):
            raw[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(raw))
        try:
            payload = runfolder.load_checkpoint(path)
        except checkpoint.CheckpointError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            continue
        assert payload["checksum"] == original == checkpoint.checksum(payload)


def test_a_checkpoint_of_this_version_without_its_checksum_is_refused(good_run, tmp_path, capsys):
    """The issue's case: weights negated, the checksum removed."""
    payload = checkpoint.load(good_run / "checkpoint.pt")
    assert payload["revision"] == checkpoint.REVISION
    key = next(iter(payload["trainer"]["modules"]))
    payload["trainer"]["modules"][key] = -payload["trainer"]["modules"][key]
    del payload["checksum"]
    folder = tmp_path / "c"
    folder.mkdir()
    torch.save(payload, folder / "checkpoint.pt")
    refused(
        capsys,
        ["evaluate", str(folder / "checkpoint.pt"), "--samples", "2"],
        "has lost its checksum .*use an earlier copy or train again",
        folder,
    )


@pytest.mark.parametrize("checksum", ["wrong", 12, None])
def test_a_wrong_checksum_is_refused(checksum, good_run, tmp_path):
    payload = checkpoint.load(good_run / "checkpoint.pt")
    payload["checksum"] = checksum
    torch.save(payload, tmp_path / "c.pt")
    load_refused(tmp_path / "c.pt", "fails its checksum")


def test_a_checkpoint_from_before_checksums_loads_with_a_note(good_run, tmp_path, capsys):
    payload = checkpoint.load(good_run / "checkpoint.pt")
    del payload["checksum"], payload["revision"]
    torch.save(payload, tmp_path / "old.pt")
    loaded = runfolder.load_checkpoint(tmp_path / "old.pt")
    assert loaded["trainer"]["epoch"] == 1
    assert "carries no checksum (written before pyro-vae recorded one)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.pop("trainer"), "it lacks 'trainer'"),
        (lambda p: p.pop("model_config"), "it lacks 'model_config'"),
        (lambda p: p.pop("train_config"), "it lacks 'train_config'"),
        (lambda p: p.pop("data"), "it lacks 'data'"),
        (lambda p: p["trainer"].pop("epoch"), "it lacks 'trainer/epoch'"),
        (lambda p: p["trainer"].pop("modules"), "it lacks 'trainer/modules'"),
        (lambda p: p["trainer"]["rng"].pop("torch"), "it lacks 'trainer/rng/torch'"),
        (lambda p: p["data"].pop("image_shape"), "it lacks 'data/image_shape'"),
        (lambda p: p["trainer"].update(epoch="3"), "'trainer/epoch' holds a str (expected int)"),
        (lambda p: p.update(trainer=[1, 2]), "'trainer' holds a list (expected a dict)"),
    ],
    ids=lambda v: v.split(" (")[0] if isinstance(v, str) else "",
)
def test_an_incomplete_checkpoint_is_one_line_naming_what_it_lacks(
    edit, message, good_run, tmp_path, capsys
):
    """Written through checkpoint.save, so its checksum holds: the structure is what fails."""
    payload = checkpoint.load(good_run / "checkpoint.pt")
    del payload["checksum"], payload["format"], payload["revision"]
    edit(payload)
    folder = tmp_path / "c"
    checkpoint.save(folder / "checkpoint.pt", payload)
    for argv in (
        ["evaluate", str(folder / "checkpoint.pt"), "--samples", "2"],
        ["train", "--resume", "--out", str(folder), "--epochs", "2"],
    ):
        refused(capsys, argv, rf"is not a complete run checkpoint: {re.escape(message)}", folder)
    assert snapshot(folder)  # still there
