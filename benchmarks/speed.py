"""Training speed of pyro-vae against a hand-written PyTorch VAE of the same architecture.

    python benchmarks/speed.py --data-dir ../shared/data --epochs 5

Two rows by default (``--nets``): the default VAE (784-500-500-50, batch 128) and a small net
whose step is bound by per-step overhead (784-64-64-8, batch 32, 10,000 digits), which is what
a GPU sees; ``--nets vaegan`` adds the conv VAE-GAN (``--likelihood vaegan --net conv``, z 32,
batch 64, 10,000 grey-level digits) against :class:`handwritten.HandWrittenVAEGAN`.
``--hidden``/``--z-dim``/``--batch-size``/``--train-size`` change one row (the one ``--nets``
names, else the default). On CUDA the device's name is printed with each row.

Both train on the same data set (one tensor on the device, dynamic binarization, batches sliced
from a per-epoch permutation: batch preparation is timed on both sides), interleaved epoch by
epoch in one process so that a noisy machine slows both alike. The hand-written VAE computes
BCE-with-logits plus the analytic Gaussian KL and steps one fused torch Adam over all
parameters; pyro-vae trains through its own ``Trainer`` (Pyro model, guide and ELBO). Prints
s/epoch, ms/step, samples/s, peak memory and the ratio pyro-vae / hand-written (median and
min-max over epochs).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from handwritten import HandWrittenVAE, HandWrittenVAEGAN

from pyro_vae import data
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.objectives import ELBOS
from pyro_vae.runtime import resolve_device, set_seed
from pyro_vae.traced import STEPS
from pyro_vae.train import Trainer


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # process-wide, Linux KiB


# the rows measured by default: the default VAE, and a small net whose step is bound by
# per-step overhead (what a GPU sees for every net of the default's size); and on request the
# conv VAE-GAN (hidden: the width of its dense layers)
NETS = {
    "default": {"hidden": [500, 500], "z_dim": 50, "batch_size": 128, "train_size": None},
    "small": {"hidden": [64, 64], "z_dim": 8, "batch_size": 32, "train_size": 10000},
    "vaegan": {
        "hidden": [256],
        "z_dim": 32,
        "batch_size": 64,
        "train_size": 10000,
        "vaegan": True,
    },
}
DEFAULT_ROWS = ["default", "small"]


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=5, help="interleaved epochs per side")
    p.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs per side first")
    p.add_argument(
        "--nets",
        nargs="+",
        default=DEFAULT_ROWS,
        choices=list(NETS),
        help="rows to measure (each: " + "; ".join(f"{k}: {v}" for k, v in NETS.items()) + ")",
    )
    p.add_argument("--z-dim", type=int, default=None, help="one custom row instead of --nets")
    p.add_argument("--hidden", type=int, nargs="*", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--activation", default="elu")
    p.add_argument("--elbo", default="trace", choices=sorted(ELBOS))
    p.add_argument("--step", default="traced", choices=STEPS, help="pyro-vae's training step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    full = data.load(args.dataset, args.data_dir)
    custom = {
        k: getattr(args, k)
        for k in ("hidden", "z_dim", "batch_size", "train_size")
        if getattr(args, k) is not None
    }
    base = args.nets[0] if len(args.nets) == 1 else "default"
    rows = {"custom": {**NETS[base], **custom}} if custom else {n: NETS[n] for n in args.nets}
    return {name: measure(args, device, full, **net) for name, net in rows.items()}


def measure(
    args: argparse.Namespace,
    device: torch.device,
    full: data.Dataset,
    hidden: list[int],
    z_dim: int,
    batch_size: int,
    train_size: int | None,
    vaegan: bool = False,
) -> dict:
    """One row: pyro-vae and the hand-written VAE (or VAE-GAN: grey levels, no binarization)
    of one architecture, interleaved."""
    set_seed(args.seed)
    ds = full.subset(train_size).to(device)
    train = ds.train
    model_config = ModelConfig(
        x_dim=ds.x_dim,
        z_dim=z_dim,
        hidden=tuple(hidden),
        activation=args.activation,
        **(
            {"net": "conv", "likelihood": "vaegan", "image_shape": ds.image_shape} if vaegan else {}
        ),
    )
    train_config = TrainConfig(
        batch_size=batch_size, elbo=args.elbo, step=args.step, device=str(device)
    )
    model, guide = build(model_config)
    trainer = Trainer(model.to(device), guide.to(device), train_config, device)
    if vaegan:
        twin = HandWrittenVAEGAN(ds.image_shape, z_dim, hidden[0], args.activation).to(device)
        opts = twin.optimizers(train_config.lr)
        train = data.as_input(train)  # grey levels in [0, 1], as both sides read them
    else:
        vae = HandWrittenVAE(ds.x_dim, z_dim, hidden, args.activation).to(device)
        opt = vae.optimizer(train_config.lr)

    def ours() -> None:
        trainer.fit(train, trainer.epoch + 1, dynamic=not vaegan, progress=False)

    def theirs() -> None:
        if vaegan:
            twin.train_epoch(opts, train, batch_size)
        else:
            vae.train_epoch(opt, train, batch_size, dynamic=True)

    for _ in range(args.warmup_epochs):
        ours()
        theirs()
    times: dict[str, list[float]] = {"pyro-vae": [], "hand-written": []}
    for epoch in range(args.epochs):
        # alternate which side goes first, so drift in machine load does not favour one
        order = [("pyro-vae", ours), ("hand-written", theirs)]
        for name, fn in order if epoch % 2 == 0 else order[::-1]:
            times[name].append(timed(device, fn))
    steps = -(-train.shape[0] // batch_size)
    ratios = [a / b for a, b in zip(times["pyro-vae"], times["hand-written"], strict=True)]
    result = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "architecture": (
            f"conv VAE-GAN {'x'.join(map(str, ds.image_shape))}-{hidden[0]}-{z_dim}"
            if vaegan
            else f"{ds.x_dim}-{'-'.join(map(str, hidden))}-{z_dim}"
        ),
        "batch_size": batch_size,
        "train_size": train.shape[0],
        "elbo": args.elbo,
        "step": args.step,
        "steps_per_epoch": steps,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "peak_memory_mb": peak_memory_mb(device),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{result['architecture']}, batch {batch_size}, {train.shape[0]} data, {steps} "
        f"steps/epoch, --elbo {args.elbo} --step {args.step}, {args.epochs} interleaved "
        f"epochs after {args.warmup_epochs} warm-up, "
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'':14s} {'s/epoch':>9s} {'ms/step':>9s} {'samples/s':>10s}")
    for side, ts in times.items():
        med = statistics.median(ts)
        result[side] = {"s_per_epoch": med, "ms_per_step": 1e3 * med / steps}
        print(f"{side:14s} {med:9.2f} {1e3 * med / steps:9.2f} {train.shape[0] / med:10.0f}")
    print(
        f"ratio pyro-vae / hand-written: {result['ratio_median']:.2f} "
        f"(min {result['ratio_min']:.2f}, max {result['ratio_max']:.2f}); "
        f"peak memory {result['peak_memory_mb']:.0f} MB"
        + (" (process, both sides)" if device.type == "cpu" else "")
        + "\n"
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
