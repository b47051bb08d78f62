"""What every experiment script shares: its options, getting a trained run, saving numbers.

An experiment either trains a run through :func:`pyro_vae.run.train` (the one training loop,
hooks allowed) or starts from ``--checkpoint``; it then writes its PNGs/GIFs and a JSON of the
numbers it shows into its output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import run as runs
from .options import (
    HelpFormatter,
    add_train_arguments,
    configs_from_args,
    mark_given,
    print_config_if_asked,
)
from .runfolder import FolderLock, write_json, writes_files
from .train import Hook

# --smoke: tiny data and network, one epoch: seconds on a CPU
SMOKE: dict[str, Any] = {
    "train_size": 512,
    "test_size": 128,
    "epochs": 1,
    "hidden": [64],
    "ll_samples": 0,
    "no_progress": True,
}


def parser(name: str, doc: str | None, **defaults: Any) -> argparse.ArgumentParser:
    """Training options (defaults overridable), ``--checkpoint`` and ``--smoke``, for the
    experiment module ``name`` (its ``__name__``: the help says ``pyro-vae run NAME``)."""
    short = name.rsplit(".", 1)[-1]
    p = argparse.ArgumentParser(
        prog=f"pyro-vae run {short}",
        description=(doc or "").strip().splitlines()[0] if doc else None,
        epilog=f"{doc}\nAlso: python -m experiments.{short} [options], from the repository.",
        formatter_class=HelpFormatter,
    )
    add_train_arguments(p, **{"ll_samples": 0, **defaults})
    p.add_argument("--checkpoint", default=None, help="start from this run instead of training")
    p.add_argument("--smoke", action="store_true", help="tiny data and network: seconds")
    return p


def parse(
    p: argparse.ArgumentParser, argv: Sequence[str] | None, **smoke: Any
) -> argparse.Namespace:
    """Parse ``argv``; ``--smoke`` overrides with ``SMOKE`` and the script's own ``smoke``
    (over a ``--config`` file too); ``--print-config`` prints the configuration and exits."""
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in {**SMOKE, **smoke}.items():
            setattr(args, key, value)
        mark_given(args, *SMOKE, *smoke)
    if print_config_if_asked(args):
        p.exit()
    return args


def trained_run(
    args: argparse.Namespace, name: str, hooks: Sequence[Hook] = ()
) -> tuple[runs.Run, Path]:
    """The run to draw from: loaded from ``--checkpoint`` or trained now, and the output folder
    (``--out``; else ``<checkpoint folder>/<name>``, or ``runs/<name>-<time>``), held by this
    process until :func:`done` (another process writing into it is refused)."""
    if args.checkpoint:
        run = runs.load(args.checkpoint, device=args.device)
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / name
        _hold(out)
    else:
        out = output_folder(args, name)
        _hold(out)
        try:
            run = train_variant(args, out, hooks=hooks)
        except BaseException:
            _let_go(out)
            raise
    out.mkdir(parents=True, exist_ok=True)
    return run, out


_held: dict[Path, tuple[FolderLock, bool]] = {}  # folder -> its lock, whether we made it


def _hold(out: Path) -> None:
    made = not out.exists()
    lock = FolderLock(out, enabled=writes_files())
    lock.acquire()
    _held[out.resolve()] = (lock, made)


def _let_go(out: Path) -> None:
    """Release ``out``; a folder this process made and left empty (a refused or interrupted
    experiment) is removed."""
    lock, made = _held.pop(out.resolve(), (None, False))
    if lock is None:
        return
    lock.release()
    if made and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def let_go_all() -> None:
    """Let go of the folders of an experiment that stopped before :func:`done`."""
    for folder in list(_held):
        _let_go(folder)


def train_variant(
    args: argparse.Namespace,
    out: Path,
    hooks: Sequence[Hook] = (),
    train_changes: dict[str, Any] | None = None,
    dataset: Any = None,
    **model_changes: Any,
) -> runs.Run:
    """Train a run into ``out`` from the command line's configuration, with ``model_changes``
    (e.g. ``z_dim=10, guide="delta"``) and ``train_changes`` (e.g. ``{"elbo": "iwae"}``)
    applied: how experiments compare several models. A run already in ``out`` is reused: one
    evaluated at the requested epochs and importance samples is loaded as it is, another is
    continued to the requested epochs. So an experiment run again with the same ``--out`` picks
    up what it trained, and is never refused. ``dataset``: a :class:`~pyro_vae.data.Dataset`
    to train on instead of the one ``--dataset`` names."""
    model_config, train_config = configs_from_args(args)
    train_config = replace(train_config, **(train_changes or {}))
    if finished(out, train_config):
        print(f"reusing the finished run in {out}", file=sys.stderr)
        run = runs.load(
            out / "checkpoint.pt", device=args.device, dataset=True if dataset is None else dataset
        )
        run.out = out
        return run
    resume = args.resume or (out / "checkpoint.pt").exists()
    if resume and not args.resume:
        print(f"continuing the run in {out} (delete it to train afresh)", file=sys.stderr)
    run, _ = runs.train(
        replace(model_config, **model_changes),
        train_config,
        out,
        resume=resume,
        hooks=hooks,
        progress=False if args.no_progress else None,
        dataset=dataset,
    )
    return run


def finished(out: Path, train_config: Any) -> bool:
    """Whether ``out`` holds a run evaluated after ``train_config.epochs`` epochs with its
    number of importance samples (or none, for a pseudo-likelihood, which has no log p(x))."""
    result = evaluation(out)
    return (
        result is not None
        and result.get("epochs") == train_config.epochs
        and (
            result.get("importance_samples", 0) == train_config.ll_samples
            or "log_likelihood_skipped" in result  # a pseudo-likelihood: no log p(x) to score
        )
    )


def evaluation(out: Path) -> dict[str, Any] | None:
    """The numbers of the run in ``out`` (its evaluation.json), or None."""
    path = out / "evaluation.json"
    return json.loads(path.read_text()) if path.is_file() else None


def output_folder(args: argparse.Namespace, name: str) -> Path:
    """``--out``, or a new ``runs/<name>-<time>`` folder."""
    return Path(args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def save_numbers(out: Path, name: str, numbers: dict[str, Any]) -> Path:
    """Write the numbers a figure shows as ``<out>/<name>.json``."""
    return write_json(out / f"{name}.json", numbers)


def done(out: Path, files: Sequence[Path]) -> None:
    """Say what the experiment wrote, and let go of its output folder."""
    _let_go(out)
    for f in files:
        print(f"wrote {f}", file=sys.stderr)
    print(f"output folder: {out}", file=sys.stderr)
