"""Learning curves: train and test ELBO per epoch, and the test ELBO's two terms.

    python -m experiments.learning_curves --epochs 20 --out runs/learning_curves

ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)): the left panel shows train and test ELBO, the
right the test reconstruction term and the KL term separately (nats per datum, one draw of z
per test datum). Reads the run's per-epoch metrics (from training now, or ``--checkpoint``).
Writes learning_curves.png and learning_curves.json (the per-epoch rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from pyro_vae import experiment, plots


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, epochs=20)
    args = experiment.parse(p, argv, epochs=2)
    run, out = experiment.trained_run(args, "learning_curves")
    history = run.trainer.history
    if not history:
        raise ValueError("the run has no per-epoch history: train it for at least one epoch")
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [r["train_elbo"] for r in history], marker="o", ms=3, label="train")
    left.plot(epochs, [r["test_elbo"] for r in history], marker="o", ms=3, label="test")
    left.set_ylabel("ELBO (nats per datum)")
    nan = float("nan")  # runs from before the terms were logged lack them
    right.plot(
        epochs,
        [-r.get("test_reconstruction", nan) for r in history],
        marker="o",
        ms=3,
        label="-E_q[log p(x|z)] (reconstruction)",
    )
    nan = float("nan")  # runs from before the terms were logged lack them
    right.plot(
        epochs,
        [r.get("test_kl", nan) for r in history],
        marker="o",
        ms=3,
        label="KL(q(z|x) || p(z))",
    )
    right.set_ylabel("nats per datum (test)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{run.data.name}, {run.binarize} binarization, z_dim={run.model.z_dim}", fontsize=10
    )
    fig.tight_layout()
    png = plots.save_figure(fig, out / "learning_curves.png")
    numbers = {"rows": history}
    experiment.done(out, [png, experiment.save_numbers(out, "learning_curves", numbers)])
    return numbers


if __name__ == "__main__":
    main()
