"""The run folder: checkpoint payload, metrics.csv, evaluation.json and the console lines.

``checkpoint.pt`` holds the configs (so the run is rebuilt from the file alone, a user's
pieces by their import paths), the data's name and shape and the trainer's state; it is
rewritten atomically after every epoch by the :class:`RunFolder` hook, before metrics.csv
(which is so never ahead of it). A run folder is written by one process at a time: it holds
a :class:`FolderLock` (``.lock``) while a run trains into it.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from . import checkpoint, distributed, evaluate
from .config import to_dict
from .configfile import write_run_config
from .loggers import TensorBoard  # noqa: F401  (its home was here: still importable from here)
from .train import ROW, VAL_ROW


class RunFolder:
    """Training hook: after each epoch, rewrite metrics.csv and the checkpoint atomically."""

    def __init__(self, run: Any, out: Path) -> None:
        self.run, self.out = run, out

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        # the checkpoint first: a failed or interrupted write leaves metrics.csv at most a row
        # behind it, never ahead; a Ctrl-C waits until all three are written
        with checkpoint.signals_held():
            save_checkpoint(self.run, self.out / "checkpoint.pt")
            write_metrics(self.out / "metrics.csv", trainer.history)
            write_run_config(self.out, self.run.model_config, self.run.train_config)
        watched = "val" if "val_elbo" in row else "test"  # --val-size: test at the end only
        elbo = evaluate.elbo_kind(self.run.model)
        extra = "".join(
            f", {key.replace('_', ' ')} {value:{'.3g' if key == 'lr' else '.4f'}}"
            for key, value in row.items()
            if key not in BASE_COLUMNS and key not in VAL_ROW
        )
        print(
            f"epoch {row['epoch']}/{self.run.train_config.epochs}: train {elbo} "
            f"{row['train_elbo']:.2f}, {watched} {elbo} {row[f'{watched}_elbo']:.2f} nats{extra} "
            f"({row['seconds']:.1f} s)",
            file=sys.stderr,
        )


class KeepBest:
    """Training hook (``--keep-best``): after an epoch that improved the watched metric (see
    :class:`~pyro_vae.train.Watch`, which must come before it), write ``best.pt``: the run's
    checkpoint as of that epoch, atomically (``pyro-vae evaluate run/best.pt`` reads it). Put
    it before :class:`RunFolder`: a run stopped between the two writes redoes that epoch."""

    def __init__(self, run: Any, out: Path) -> None:
        self.run, self.path = run, out / "best.pt"

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        if trainer.best is not None and trainer.best["epoch"] == row["epoch"]:
            save_checkpoint(self.run, self.path)


class BitsPerDim:
    """Training hook for 8-bit data: adds ``test_bits_per_dim``, the test ELBO in bits per
    dimension (see :func:`pyro_vae.evaluate.bits_per_dim`)."""

    def __init__(self, run: Any) -> None:
        self.x_dim = run.data.x_dim
        self.levels = getattr(run.model.likelihood, "levels", None)

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        for split in ("test", "val") if "val_elbo" in row else ("test",):
            row[f"{split}_bits_per_dim"] = evaluate.bits_per_dim(
                -row[f"{split}_elbo"], self.x_dim, self.levels
            )


BASE_COLUMNS = frozenset(ROW)  # the trainer's own; the console line adds the hooks' others


def save_checkpoint(run: Any, path: Path) -> Path:
    """Write the run's checkpoint to ``path``; a failed write says what ``path`` still holds."""
    try:
        return checkpoint.save(
            path,
            {
                "model_config": to_dict(run.model_config),
                "train_config": to_dict(run.train_config),
                "data": {
                    "name": run.data.name,
                    "image_shape": list(run.data.image_shape),
                    "binarize": run.binarize,
                    "source": run.data.source,
                    "fingerprint": run.data_fingerprint,
                },
                "trainer": run.trainer.state_dict(),
            },
        )
    except checkpoint.WriteError as e:
        raise checkpoint.WriteError(f"{e}; {still_holds(path)}") from e.__cause__


def still_holds(path: Path) -> str:
    """What the checkpoint at ``path`` holds, for a message after a failed write."""
    try:
        epoch = checkpoint.load(path)["trainer"]["epoch"]
    except (checkpoint.CheckpointError, KeyError, TypeError):
        return "no epoch has been saved yet"
    return f"{path.name} still holds epoch {epoch}: continue it with --resume"


# what :func:`save_checkpoint` writes, checked before a run is rebuilt from a file: a key's
# value is the type it must have, or the keys of the dict it must be
STRUCTURE: dict[str, Any] = {
    "model_config": dict,
    "train_config": dict,
    "data": {"name": str, "image_shape": list, "binarize": str},
    "trainer": {
        "modules": dict,
        "optimizer": {"state": dict, "param_groups": list},
        "epoch": int,
        "step": int,
        "history": list,
        "rng": {"torch": torch.Tensor},
    },
}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A run's checkpoint (:func:`pyro_vae.checkpoint.load`), its structure checked: a key
    missing or of the wrong type is one :class:`~pyro_vae.checkpoint.CheckpointError` line."""
    payload = checkpoint.load(path)
    problem = _structure_problem(payload, STRUCTURE, "")
    if problem:
        raise checkpoint.CheckpointError(
            f"{path} is not a complete run checkpoint: {problem} (pyro-vae writes model_config, "
            "train_config, data and trainer); use an earlier copy or train again"
        )
    return payload


def _structure_problem(value: Any, spec: Any, where: str) -> str | None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where!r} holds a {type(value).__name__} (expected a dict)"
        for key, inner in spec.items():
            at = f"{where}/{key}" if where else key
            if key not in value:
                return f"it lacks {at!r}"
            problem = _structure_problem(value[key], inner, at)
            if problem:
                return problem
        return None
    if not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        return f"{where!r} holds a {type(value).__name__} (expected {spec.__name__})"
    return None


def write_metrics(path: Path, history: Sequence[dict[str, float]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    checkpoint.write_atomically(path, lambda f: f.write(text.getvalue().encode()))


def write_json(path: Path, numbers: dict[str, Any]) -> Path:
    text = json.dumps(numbers, indent=2, default=float) + "\n"
    return checkpoint.write_atomically(path, lambda f: f.write(text.encode()))


# -- one process per run folder -------------------------------------------------------------

LOCK = ".lock"


class FolderBusy(FileExistsError):
    """Another process holds the run folder's lock."""


_locks: dict[Path, tuple[int, int]] = {}  # folder (resolved) -> (descriptor, times held)


def writes_files() -> bool:
    """Whether this process writes the run folder: every process but torchrun's ranks > 0
    (known from ``RANK`` before the process group is joined)."""
    rank = int(os.environ.get("RANK", "0")) if distributed.launched() else 0
    return rank == 0 and distributed.world().main


class FolderLock:
    """The run folder ``folder`` held by this process (``folder/.lock``, under ``flock``,
    holding the pid and host): :meth:`acquire` makes the folder if needed and refuses, in one
    :class:`FolderBusy` line naming the holder, a folder another process holds; a lock left
    by a process that ended is taken over with a note. Held again by the same process it
    counts (released when the outermost holder releases it). ``enabled=False``: a no-op (the
    ranks of a torchrun run other than rank 0)."""

    def __init__(self, folder: str | os.PathLike, enabled: bool = True) -> None:
        self.folder, self.enabled, self.held = Path(folder), enabled, False
        self.key = self.folder.resolve()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if not self.enabled or self.held:
            return
        key = self.key = self.folder.resolve()
        if key in _locks:
            fd, count = _locks[key]
            _locks[key] = (fd, count + 1)
        else:
            _locks[key] = (_take(self.folder), 1)
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        fd, count = _locks.pop(self.key)
        if count > 1:
            _locks[self.key] = (fd, count - 1)
            return
        with contextlib.suppress(OSError):
            if os.stat(self.key / LOCK).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.key / LOCK)
        os.close(fd)


@atexit.register
def _release_all() -> None:
    """Remove the lock files this process still holds as it exits."""
    for folder, (fd, _) in list(_locks.items()):
        with contextlib.suppress(OSError):
            if os.stat(folder / LOCK).st_ino == os.fstat(fd).st_ino:
                os.unlink(folder / LOCK)
    _locks.clear()


def _take(folder: Path) -> int:
    """Open ``folder/.lock`` and ``flock`` it; returns its descriptor (see :class:`FolderLock`)."""
    path = folder / LOCK
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"cannot write into {folder} ({e.strerror or e}): choose a writable --out with "
            "free space"
        ) from None
    for _ in range(100):  # retried while holders release it under our hands
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(
                f"cannot write into {folder} ({e.strerror or e}): choose a writable --out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                break  # a file system without locks: the pid in the file decides, below
            os.close(fd)
            holder = _holder(path)
            if holder is None:  # released and removed meanwhile: try again
                time.sleep(0.01)
                continue
            raise FolderBusy(
                f"{folder} is in use by {holder}: wait for it to finish, or choose another --out"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # removed by its holder's release meanwhile: take the new file
    else:
        raise FolderBusy(f"{folder} is in use by other processes: choose another --out")
    left = os.pread(fd, 4096, 0).decode(errors="replace").split()
    if left and left[0].isdigit() and int(left[0]) != os.getpid():
        pid, host = int(left[0]), left[1] if len(left) > 1 else "?"
        here = host == socket.gethostname()
        if here and checkpoint.alive(pid) and not _locked(fd):  # no flock: trust the pid
            os.close(fd)
            raise FolderBusy(
                f"{folder} is in use by process {pid} on {host}: wait for it to finish, or "
                "choose another --out"
            )
        print(
            f"note: {path} was left by process {pid} on {host}, which "
            f"{'no longer runs' if here and not checkpoint.alive(pid) else 'does not hold it'}"
            ": taken over",
            file=sys.stderr,
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def _locked(fd: int) -> bool:
    """Whether this process holds ``flock`` on ``fd`` (False where the file system has none)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(path: Path) -> str | None:
    """Who holds the lock at ``path``, in words (None: the file is gone)."""
    for _ in range(50):  # a holder writes its pid just after taking the lock
        try:
            words = path.read_text(errors="replace").split()
        except FileNotFoundError:
            return None
        if words:
            host = words[1] if len(words) > 1 else "?"
            return f"process {words[0]} on {host}"
        time.sleep(0.01)
    return "another process"


def describe(run: Any) -> dict[str, Any]:
    """What a result was measured on: data, binarization, epochs, config, device, versions."""
    other = {"other_data": True} if getattr(run, "other_data", False) else {}
    return {
        "dataset": run.data.name,
        "data_source": run.data.source,
        **other,
        "binarization": run.binarize,
        "epochs": run.trainer.epoch,
        "model_config": to_dict(run.model_config),
        "device": str(run.trainer.device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
        },
    }


def format_summary(result: dict[str, Any], kind: Any) -> str:
    """One line: the test ELBO, log p(x) with its standard error and k, and the kind's own."""
    other = " (other data than the run was trained on)" if result.get("other_data") else ""
    line = (
        f"{result['dataset']}{other} test ({result['n_data']} data, {result['binarization']} "
        f"binarization, {result['epochs']} epochs): {result.get('elbo_kind', 'ELBO')} "
        f"{result['elbo']:.2f} nats"
    )
    if "log_likelihood_skipped" in result:
        line += " (no log p(x): a pseudo-likelihood)"
    if "log_likelihood" in result:
        line += (
            f", log p(x{kind.conditioned_on}) {result['log_likelihood']:.2f} ± "
            f"{result['log_likelihood_stderr']:.2f} nats (k={result['importance_samples']} "
            "importance samples)"
        )
    if "bits_per_dim" in result or "elbo_bits_per_dim" in result:
        bpd = result.get("bits_per_dim", result.get("elbo_bits_per_dim"))
        line += f", {bpd:.3f} bits/dim"
    return line + kind.summary(result)
