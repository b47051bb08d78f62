"""Interpolation in latent space between pairs of test digits.

    python -m experiments.interpolation --epochs 10 --out runs/interpolation

For pairs of the same and of different classes, the encodings z_a = E_q[z|x_a] and
z_b = E_q[z|x_b] are joined by a linear path and by a spherical one (slerp, which keeps the
norm typical of the Gaussian prior), and E[x|z] is decoded along each. The end columns show
the two data. Writes interpolation_same.png, interpolation_different.png and
interpolation.json (the pairs, their labels, and the latent norm along each path).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__)
    p.add_argument("--steps", action=Count, most=100, default=10, help="points on each path")
    p.add_argument("--pairs", action=Count, most=100, default=4, help="pairs of each kind")
    args = experiment.parse(p, argv)
    run, out = experiment.trained_run(args, "interpolation")
    x, labels = data.as_input(run.data.test), run.data.test_labels
    if labels is None:
        raise ValueError(f"{run.data.name} has no labels: interpolation pairs digits by class")
    numbers: dict = {"steps": args.steps}
    files = []
    for kind, same in (("same", True), ("different", False)):
        pairs = latent.pairs_by_label(labels, same, args.pairs, seed=args.seed)
        rows, row_labels, norms = [], [], []
        for i, j in pairs:
            za, zb = latent.encode(run.guide, x[[i, j]])
            for name, path in (
                ("linear", latent.lerp(za, zb, args.steps)),
                ("spherical", latent.slerp(za, zb, args.steps)),
            ):
                rows.append(torch.cat([x[i : i + 1], latent.decode(run.model, path), x[j : j + 1]]))
                row_labels.append(f"{int(labels[i])}→{int(labels[j])} {name}")
                norms.append(path.norm(dim=1).tolist())
        fig = plots.grid_figure(
            torch.cat(rows),
            run.data.image_shape,
            ncol=args.steps + 2,
            row_labels=row_labels,
            title=f"{kind} classes: data at both ends, E[x|z] along linear and spherical paths",
        )
        files.append(plots.save_figure(fig, out / f"interpolation_{kind}.png"))
        numbers[kind] = {
            "pairs": pairs,
            "labels": [[int(labels[i]), int(labels[j])] for i, j in pairs],
            "latent_norms": dict(zip(row_labels, norms, strict=True)),
        }
    files.append(experiment.save_numbers(out, "interpolation", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
