"""Samples per second of one run on 1 and on N processes (torchrun), same effective batch.

    python benchmarks/scaling.py --data-dir ../shared/data --epochs 3

Each row trains ``pyro-vae train`` under ``torchrun --nproc-per-node P`` with batch B/P per
process, so every row takes the same optimizer steps on the same number of data per step
(batch B; see the README's "Several processes"). The CPU threads are split between the
processes (``OMP_NUM_THREADS`` = threads / P), so on a machine with C cores the rows compare
one process using C cores with P processes using C/P each: what data parallelism buys on the
same hardware. On GPUs (``--device cuda``) each process takes one GPU. Samples/s is the
training set size over the median training time of the epochs after the first (the first pays
for start-up and for tracing the step); the test ELBO is printed beside it.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_row(args: argparse.Namespace, procs: int, out: Path) -> dict:
    threads = max(1, args.threads // procs)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={procs}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "pyro_vae",
        "train",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size // procs),
        "--ll-samples",
        "0",
        "--device",
        args.device,
        "--no-progress",
        "--out",
        str(out),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
        *(["--train-size", str(args.train_size)] if args.train_size else []),
        *args.extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"torchrun with {procs} processes failed:\n{done.stderr[-3000:]}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    timed = [float(r["seconds"]) for r in rows[1:]] or [float(rows[0]["seconds"])]
    seconds = statistics.median(timed)
    n = int(args.train_size or 60000)
    return {
        "processes": procs,
        "threads_each": threads,
        "batch_each": args.batch_size // procs,
        "s_per_epoch": seconds,
        "samples_per_s": n / seconds,
        "test_elbo": float(rows[-1]["test_elbo"]),
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128, help="effective batch B (all ranks)")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("extra", nargs="*", help="more pyro-vae train options, after --")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.procs:
            rows.append(one_row(args, procs, Path(tmp) / f"p{procs}"))
    print(
        f"effective batch {args.batch_size}, {args.epochs} epochs, device {args.device}, "
        f"{args.threads} CPU threads in all, torch {torch.__version__}"
    )
    print(
        f"{'processes':>9s} {'threads':>7s} {'batch':>5s} {'s/epoch':>8s} {'samples/s':>10s} "
        f"{'speed-up':>8s} {'test ELBO':>9s}"
    )
    for r in rows:
        print(
            f"{r['processes']:9d} {r['threads_each']:7d} {r['batch_each']:5d} "
            f"{r['s_per_epoch']:8.2f} {r['samples_per_s']:10.0f} "
            f"{r['samples_per_s'] / rows[0]['samples_per_s']:8.2f} {r['test_elbo']:9.2f}"
        )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
