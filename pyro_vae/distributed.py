"""One run across processes, GPUs and machines, on ``torch.distributed``.

A run launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the
rendezvous address) joins the process group here: NCCL on GPUs (rank r on ``cuda:LOCAL_RANK``),
gloo on CPUs, with a timeout on every collective so that a rank that died or hangs stops the
others with one line instead of a silent wait. Outside ``torchrun`` (or with one process) the
world is one rank and every function here is a no-op.

What the other modules ask of it: :func:`world` (who am I, how many are we), the epoch's
shard of the data (:func:`shard_rows`, :func:`shard`), sums over ranks (:func:`all_sum`), per-datum
values gathered in rank order (:func:`gather`), and :func:`barrier` while rank 0 writes. At
start-up the ranks compare their options (:func:`check_same_start`) and their data
(:func:`check_same_data`): ranks started differently are refused together, in one line.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor

DEFAULT_TIMEOUT_S = 600.0


class RankError(RuntimeError):
    """Another process of a distributed run died, hung past the timeout, or lost contact."""


class RankMismatch(ValueError):
    """The processes of a torchrun run were started with different options or data (raised
    on every rank, with the same text)."""


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


_WORLD = World()


def world() -> World:
    return _WORLD


def launched() -> bool:
    """Whether ``torchrun`` (or another launcher setting its variables) started >1 process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group torchrun described (once per process); returns the world.

    ``device``: ``auto`` picks NCCL and ``cuda:LOCAL_RANK`` where CUDA is present, else gloo
    on the CPU; ``cpu`` forces gloo. Collectives that wait longer than ``timeout_s`` raise."""
    global _WORLD
    if not launched():
        return _WORLD
    if dist.is_initialized():
        return _WORLD
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    _WORLD = World(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    return _WORLD


def shutdown() -> None:
    """Leave the process group (for Python use: tests, notebooks). A command-line process
    ends with :func:`leave` instead."""
    global _WORLD
    if dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


def leave(finished: bool, code: int | None = None) -> NoReturn:
    """End this process of a torchrun run: after a last barrier when every rank finished,
    then at once (``os._exit``, files flushed), without tearing the process group down. gloo
    aborts a process whose peers close their connections while its own teardown runs (seen
    as SIGABRT of a rank that had finished), which would turn a good run into a failed one."""
    if finished:
        with contextlib.suppress(RankError):
            barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit((0 if finished else 1) if code is None else code)


def device_for(device: torch.device) -> torch.device:
    """A CUDA device without an index means this rank's GPU (``cuda:LOCAL_RANK``)."""
    if device.type == "cuda" and device.index is None and _WORLD.size > 1:
        return torch.device("cuda", _WORLD.local_rank)
    return device


def rank_seed(seed: int) -> int:
    """Each rank's seed for its own draws (latents, dynamic binarization): rank 0 keeps
    ``seed``, so a one-process run is unchanged."""
    return seed + 1_000_003 * _WORLD.rank


def shard(n: int, w: World | None = None) -> slice:
    """This rank's contiguous part of ``range(n)`` (sizes differ by at most one)."""
    w = w or _WORLD
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return slice(start, start + base + (w.rank < extra))


def shard_rows(index: Tensor, batch_size: int, w: World | None = None) -> Iterator[Tensor]:
    """The epoch's batches of this rank from one permutation ``index`` shared by all ranks:
    global batch i is ``index[i·N·B : (i+1)·N·B]`` and rank r takes the r-th of its N parts,
    so the ranks' batches tile the epoch exactly. A last global batch with fewer data than
    ranks is left out (each rank must step the same number of times)."""
    w = w or _WORLD
    step = batch_size * w.size
    for start in range(0, index.shape[0], step):
        rows = index[start : start + step]
        if rows.shape[0] < w.size:
            return
        yield rows[shard(rows.shape[0], w)]


def num_sharded_batches(n: int, batch_size: int, w: World | None = None) -> int:
    w = w or _WORLD
    step = batch_size * w.size
    full, rest = divmod(n, step)
    return full + (rest >= w.size)


def num_sharded_data(n: int, batch_size: int, w: World | None = None) -> int:
    """How many data one epoch of :func:`shard_rows` covers, over all ranks."""
    w = w or _WORLD
    rest = n % (batch_size * w.size)
    return n - (rest if rest < w.size else 0)


def all_sum(t: Tensor) -> Tensor:
    """``t`` summed over ranks (in place), on every rank."""
    if _WORLD.size > 1:
        _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
    return t


def gather(t: Tensor) -> Tensor:
    """Every rank's 1-D ``t`` (lengths may differ), concatenated in rank order, on every rank."""
    if _WORLD.size == 1:
        return t
    sizes = torch.zeros(_WORLD.size, dtype=torch.long, device=t.device)
    sizes[_WORLD.rank] = t.shape[0]
    all_sum(sizes)
    longest = int(sizes.max())
    padded = torch.zeros(longest, dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(_WORLD.size)]
    _collective(dist.all_gather, parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)])


def broadcast(t: Tensor, src: int = 0) -> Tensor:
    if _WORLD.size > 1:
        _collective(dist.broadcast, t, src=src)
    return t


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order, on every rank (one collective, within
    the timeout). NCCL sends it from this rank's GPU, the current device :func:`init` set."""
    if _WORLD.size == 1:
        return [obj]
    every: list[Any] = [None] * _WORLD.size
    _collective(dist.all_gather_object, every, obj)
    return every


# options that may differ from rank to rank: the data may lie in another folder on each machine
# (the data themselves are compared by check_same_data)
PER_RANK = ("data_dir",)


def start_options(configs: Sequence[Any], out: str | os.PathLike, resumed: Any) -> dict[str, str]:
    """What a rank was started with, as ``{--flag: value as shown}``: the options of the
    ``configs`` (dataclasses; not the values set from the data), the run folder ``out``
    resolved (a relative --out from another working folder is another folder), and, resuming,
    the checkpoint's epoch and step (``resumed``: the loaded checkpoint, or None)."""
    from . import __version__
    from .data import path_spec

    shown: dict[str, str] = {"the pyro-vae version": __version__}
    for config in configs:
        for f in fields(config):
            if not f.metadata.get("cli", True) or f.name in PER_RANK:
                continue
            value = getattr(config, f.name)
            if f.name == "dataset" and isinstance(value, str) and (parts := path_spec(value)):
                value = f"{parts[0]}:PATH"  # the path may differ per machine, the data may not
            shown[f.metadata.get("flag", "--" + f.name.replace("_", "-"))] = _shown(value)
    shown["--out"] = str(Path(out).resolve())
    shown["--resume"] = _shown(resumed is not None)
    if resumed is not None:
        trainer = resumed.get("trainer", {}) if isinstance(resumed, dict) else {}
        shown["the checkpoint resumed"] = f"epoch {trainer.get('epoch')} step {trainer.get('step')}"
    return shown


def check_same_start(options: dict[str, str]) -> None:
    """Refuse, on every rank with the same line, ranks whose :func:`start_options` differ
    (one all-gather; every rank waits here for the others, as at a barrier)."""
    if _WORLD.size == 1:
        return
    every = all_gather_object(options)
    names = list(dict.fromkeys(name for each in every for name in each))
    differ = [n for n in names if len({each.get(n) for each in every}) > 1]
    if not differ:
        return
    parts = [_per_rank(n, [each.get(n, "absent") for each in every]) for n in differ[:4]]
    more = f"; and {len(differ) - 4} more" if len(differ) > 4 else ""
    raise RankMismatch(
        f"torchrun ranks were started with different options: {'; '.join(parts)}{more}: "
        "start every rank with the same command"
    )


@contextlib.contextmanager
def loading_data() -> Iterator[None]:
    """Around a rank's data load: where it fails on some ranks only, the others, waiting
    for them in :func:`check_same_data`, are told which rank failed and why; this rank's own
    error is raised as it was."""
    try:
        yield
    except Exception as e:
        if _WORLD.size > 1:
            with contextlib.suppress(RankError):
                all_gather_object((None, _first_line(e), True))
        raise


def check_same_data(dataset: Any, fingerprint: str | None) -> None:
    """Refuse, on every rank with the same line, ranks whose data differ (``fingerprint``:
    the digest of the ``dataset`` this rank loaded, after --train-size and --test-size), or
    data that some ranks could not load (:func:`loading_data`)."""
    if _WORLD.size == 1:
        return
    what = (
        f"{dataset.name} ({len(dataset.train)} train / {len(dataset.test)} test, fingerprint "
        f"{fingerprint}) from {dataset.source}"
    )
    every = all_gather_object((fingerprint, what, False))
    failed = [rank for rank, (_, _, error) in enumerate(every) if error]
    if failed:
        their = "its" if len(failed) == 1 else "their"
        raise RankMismatch(
            f"torchrun {_ranks(failed)} could not load {their} data ({every[failed[0]][1]}): "
            "give every rank the same data (--dataset, --data-dir)"
        )
    if len({fp for fp, _, _ in every}) == 1:
        return
    groups: dict[str | None, list[int]] = {}
    for rank, (fp, _, _) in enumerate(every):
        groups.setdefault(fp, []).append(rank)
    parts = [f"{_ranks(ranks)} loaded {every[ranks[0]][1]}" for ranks in groups.values()]
    raise RankMismatch(
        f"torchrun ranks were started with different data: {_and(parts)}: give every rank "
        "the same data (--dataset, --data-dir)"
    )


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _shown(value: Any) -> str:
    """An option's value as it is typed on the command line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    if isinstance(value, tuple | list):
        return " ".join(_shown(v) for v in value)
    return str(value)


def _per_rank(name: str, values: list[str]) -> str:
    """``--lr is 0.001 on rank 0 and 0.01 on rank 1`` (ranks sharing a value grouped)."""
    groups: dict[str, list[int]] = {}
    for rank, value in enumerate(values):
        groups.setdefault(value, []).append(rank)
    return f"{name} is " + _and([f"{v} on {_ranks(r)}" for v, r in groups.items()])


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def barrier() -> None:
    """Wait for every rank (e.g. while rank 0 writes the checkpoint and figures)."""
    if _WORLD.size > 1:
        device = torch.device("cuda", _WORLD.local_rank) if _WORLD.backend == "nccl" else None
        # a tiny all-reduce rather than dist.barrier(): it honours the timeout on every backend
        _collective(dist.all_reduce, torch.zeros(1, device=device))


def _collective(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except RuntimeError as e:
        raise lost(e) from None


# what gloo and NCCL say when a peer is gone or a collective timed out
_COMMUNICATION = ("gloo", "nccl", "connection", "timed out", "timeout", "socket", "peer")


def communication_error(e: BaseException) -> bool:
    """Whether ``e`` (raised inside a collective, e.g. DDP's gradient all-reduce) says that
    another rank is gone, rather than a mistake in this process."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return _WORLD.size > 1 and any(word in text for word in _COMMUNICATION)


def lost(e: BaseException) -> RankError:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # gloo's "[.../pair.cc:537] " source location
    text = text.split(". ")[0][:120]
    return RankError(
        f"rank {_WORLD.rank} of {_WORLD.size} lost the other processes ({text}): "
        "one died, or hung longer than --dist-timeout"
    )


__all__ = [
    "RankError",
    "RankMismatch",
    "World",
    "all_gather_object",
    "all_sum",
    "barrier",
    "broadcast",
    "check_same_data",
    "check_same_start",
    "communication_error",
    "device_for",
    "gather",
    "init",
    "launched",
    "leave",
    "loading_data",
    "lost",
    "rank_seed",
    "shard",
    "shard_rows",
    "shutdown",
    "start_options",
    "world",
]
