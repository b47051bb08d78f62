"""Training as it happens: the encoder's latent scatter and the decoder's manifold, animated.

    python -m experiments.training_gif --epochs 10 --out runs/training_gif

A training hook (not a second loop) takes snapshots at logarithmically spaced steps: the
encoder means of a fixed set of test images, and E[x|z] on a grid of prior percentiles. Each
snapshot becomes one frame, labelled with its step. Writes latent_training.gif,
manifold_training.gif, the last frames as PNGs, and training_gif.json (the snapshot steps and
the test ELBO of each epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count
from pyro_vae.run import Run
from pyro_vae.train import Trainer


class Snapshots:
    """Hook: at the given steps, record the latent codes of ``n`` test images and the decoded
    percentile grid."""

    def __init__(self, steps: set[int], n: int, grid: int) -> None:
        self.steps, self.n, self.grid = steps, n, grid
        self.frames: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def on_run_start(self, run: Run) -> None:
        self.x = data.as_input(run.data.test[: self.n])
        self.labels = None if run.data.test_labels is None else run.data.test_labels[: self.n]
        self.image_shape = run.data.image_shape

    def on_step(self, trainer: Trainer) -> None:
        if trainer.step in self.steps:
            self.take(trainer)

    def take(self, trainer: Trainer) -> None:
        z = latent.encode(trainer.guide, self.x)[:, :2].cpu()
        grid, cols, rows = latent.percentile_grid(trainer.model, self.grid)
        self.frames.append((trainer.step, z, latent.decode(trainer.model, grid).cpu()))
        self.cols, self.rows = cols.tolist(), rows.tolist()


def log_steps(total: int, frames: int) -> set[int]:
    """About ``frames`` steps from 1 to ``total``, evenly spaced in log(step)."""
    return {int(s) for s in np.unique(np.round(np.logspace(0, np.log10(total), frames)))}


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, z_dim=2)
    p.add_argument(
        "--frames", action=Count, most=1000, default=30, help="snapshots (log-spaced steps)"
    )
    p.add_argument("--n", action=Count, default=2000, help="test images in the scatter")
    p.add_argument("--grid", action=Count, most=100, default=15, help="manifold images per side")
    args = experiment.parse(p, argv, frames=4, n=128, grid=4)
    if args.checkpoint:
        raise ValueError("training_gif watches training happen: run it without --checkpoint")
    n_train = args.train_size or 60000
    total = args.epochs * -(-n_train // args.batch_size)
    hook = Snapshots(log_steps(total, args.frames), args.n, args.grid)
    run, out = experiment.trained_run(args, "training_gif", hooks=[hook])
    if not hook.frames or hook.frames[-1][0] != run.trainer.step:
        hook.take(run.trainer)  # the last step, when the data set was smaller than assumed
    limit = float(max(3.0, max(z.abs().max() for _, z, _ in hook.frames[-3:])))

    def scatter(step: int, z: torch.Tensor) -> plt.Figure:
        title = f"step {step}: E_q[z|x] of {len(z)} test images"
        return plots.scatter_figure(z, hook.labels, title, limits=limit)

    def manifold(step: int, images: torch.Tensor) -> plt.Figure:
        title = f"step {step}: E[x|z] at prior percentiles"
        return plots.manifold_figure(images, hook.image_shape, hook.rows, hook.cols, title=title)

    step, z, images = hook.frames[-1]
    files = [
        plots.save_gif(out / "latent_training.gif", [scatter(s, z) for s, z, _ in hook.frames]),
        plots.save_gif(out / "manifold_training.gif", [manifold(s, i) for s, _, i in hook.frames]),
        plots.save_figure(scatter(step, z), out / "latent_final.png"),
        plots.save_figure(manifold(step, images), out / "manifold_final.png"),
    ]
    numbers = {
        "snapshot_steps": [step for step, _, _ in hook.frames],
        "test_elbo_per_epoch": [r["test_elbo"] for r in run.trainer.history],
    }
    files.append(experiment.save_numbers(out, "training_gif", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
