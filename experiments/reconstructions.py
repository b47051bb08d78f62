"""Reconstructions: random test digits (top row) and E[x|z] at z = E_q[z|x] (bottom row).

    python -m experiments.reconstructions --epochs 10 --out runs/reconstructions

The model never saw these digits: they come from the test split. Writes reconstructions.png
and reconstructions.json (the digits' indices and labels, and log p(x | z) at the posterior
mean for each).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__)
    p.add_argument("--n", action=Count, most=100, default=12, help="digits per row")
    p.add_argument(
        "--rows", action=Count, most=100, default=3, help="pairs of rows (data, reconstruction)"
    )
    args = experiment.parse(p, argv)
    run, out = experiment.trained_run(args, "reconstructions")
    x, labels = data.as_input(run.data.test), run.data.test_labels
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    idx = idx[: args.n * args.rows].to(x.device)
    chosen, z = x[idx], latent.encode(run.guide, x[idx])
    recon = latent.decode(run.model, z)
    with torch.no_grad():
        log_lik = run.model.decode(z).log_prob(chosen).cpu()
    rows = []
    for r in range(args.rows):
        part = slice(r * args.n, (r + 1) * args.n)
        rows += [chosen[part], recon[part]]
    fig = plots.grid_figure(
        torch.cat(rows),
        run.data.image_shape,
        ncol=args.n,
        title="test data and their reconstructions E[x|z], z = E_q[z|x] (alternating rows)",
    )
    png = plots.save_figure(fig, out / "reconstructions.png")
    numbers = {
        "test_indices": idx.tolist(),
        "labels": None if labels is None else labels[idx].tolist(),
        "log_p_x_given_z_at_posterior_mean": log_lik.tolist(),
        "binarization": run.binarize,
    }
    experiment.done(out, [png, experiment.save_numbers(out, "reconstructions", numbers)])
    return numbers


if __name__ == "__main__":
    main()
