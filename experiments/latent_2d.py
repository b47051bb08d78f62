"""Latent space in 2-D: the encoder means E_q[z|x] of the test set, coloured by digit label.

    python -m experiments.latent_2d --epochs 10 --out runs/latent_2d

Trains a VAE with z_dim = 2 (or draws from ``--checkpoint``; for z_dim > 2 the first two
coordinates are shown). Writes latent_2d.png and latent_2d.json (per-label mean and standard
deviation of the encodings).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro_vae import experiment, latent, plots


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, z_dim=2)
    args = experiment.parse(p, argv)
    run, out = experiment.trained_run(args, "latent_2d")
    z = latent.encode(run.guide, run.data.test)[:, :2].cpu()
    labels = run.data.test_labels
    title = f"E_q[z|x] of {len(z)} test images ({run.data.name}, z_dim={run.model.z_dim})"
    png = plots.save_figure(plots.scatter_figure(z, labels, title), out / "latent_2d.png")
    numbers: dict = {"z_dim": run.model.z_dim, "n_test": len(z)}
    if labels is not None:
        labels = labels.cpu()
        numbers["per_label"] = {
            int(k): {"mean": z[labels == k].mean(0).tolist(), "std": z[labels == k].std(0).tolist()}
            for k in labels.unique()
        }
    experiment.done(out, [png, experiment.save_numbers(out, "latent_2d", numbers)])
    return numbers


if __name__ == "__main__":
    main()
