"""Decoded manifold: E[x|z] on a grid of evenly spaced percentiles of the prior.

    python -m experiments.manifold --epochs 10 --out runs/manifold

Points of the unit square (levels 0.05 ... 0.95) are mapped through the prior's inverse CDF,
so equal steps hold equal prior mass; the axes show the z values. Trains a VAE with
z_dim = 2 (for a larger z_dim from ``--checkpoint``, coordinates ``--dims`` vary and the others
are 0). Writes manifold.png and manifold.json (the grid's z values).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro_vae import experiment, latent, plots
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, z_dim=2)
    p.add_argument("--grid", action=Count, most=100, default=20, help="images per side")
    p.add_argument(
        "--dims", action=Count, least=0, nargs=2, default=[0, 1], help="latent coordinates shown"
    )
    args = experiment.parse(p, argv, grid=6)
    if not args.checkpoint:  # before training (from a checkpoint: its z_dim, once loaded)
        latent.check_dims(args.dims, args.z_dim)
    run, out = experiment.trained_run(args, "manifold")
    dims = (args.dims[0], args.dims[1])
    z, cols, rows = latent.percentile_grid(run.model, args.grid, dims)
    images = latent.decode(run.model, z)
    fig = plots.manifold_figure(
        images,
        run.data.image_shape,
        rows.tolist(),
        cols.tolist(),
        labels=(f"$z_{dims[0] + 1}$", f"$z_{dims[1] + 1}$"),
        title=f"E[x|z] at prior percentiles 5%...95% ({run.data.name}, z_dim={run.model.z_dim})",
    )
    png = plots.save_figure(fig, out / "manifold.png")
    numbers = {"dims": list(dims), "z_columns": cols.tolist(), "z_rows": rows.tolist()}
    experiment.done(out, [png, experiment.save_numbers(out, "manifold", numbers)])
    return numbers


if __name__ == "__main__":
    main()
