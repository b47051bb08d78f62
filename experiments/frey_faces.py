"""Frey faces with a Gaussian likelihood: reconstructions and the 2-D manifold of expressions.

    python -m experiments.frey_faces --out runs/frey_faces

Kingma & Welling's second data set: 1,965 grey 28 x 20 images of one face. The model is
z ~ N(0, I_2), x ~ N(f(z), sigma^2 I) with sigma one learned scale (``likelihoods.Normal``),
an MLP with 200 hidden units each way, grey levels unbinarized. With two latent dimensions the
decoded grid over the prior's percentiles shows how expression and pose vary. Writes
frey_reconstructions.png, frey_manifold.png and frey_faces.json (the learned sigma, test ELBO).
The data file is ``frey_rawface.mat``: pass its folder with --data-dir (in this project:
../shared/data).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(
        __name__,
        __doc__,
        dataset="frey-faces",
        likelihood="normal",
        z_dim=2,
        hidden=[200],
        epochs=300,
        batch_size=100,
    )
    p.add_argument("--grid", action=Count, most=100, default=12, help="manifold images per side")
    p.add_argument("--n", action=Count, most=100, default=12, help="faces per reconstruction row")
    args = experiment.parse(p, argv, epochs=3, grid=4, train_size=None, test_size=None)
    run, out = experiment.trained_run(args, "frey_faces")
    shape, x = run.data.image_shape, data.as_input(run.data.test[: args.n])
    recon = latent.decode(run.model, latent.encode(run.guide, x))
    files = [
        plots.save_figure(
            plots.grid_figure(
                torch.cat([x, recon.clamp(0, 1)]),
                shape,
                ncol=args.n,
                title="test faces (top) and E[x|z], z = E_q[z|x] (bottom)",
            ),
            out / "frey_reconstructions.png",
        )
    ]
    z, cols, rows = latent.percentile_grid(run.model, args.grid)
    images = latent.decode(run.model, z).clamp(0, 1)
    files.append(
        plots.save_figure(
            plots.manifold_figure(
                images,
                shape,
                rows.tolist(),
                cols.tolist(),
                title="Frey faces: E[x|z] at prior percentiles 5%...95%",
            ),
            out / "frey_manifold.png",
        )
    )
    sigma = getattr(run.model.likelihood, "log_scale", None)
    numbers = {
        "likelihood_scale": None if sigma is None else sigma.exp().item(),
        "test_elbo": run.trainer.history[-1]["test_elbo"] if run.trainer.history else None,
        "n_train": len(run.data.train),
        "n_test": len(run.data.test),
        "note": "ELBO of a Gaussian density on grey levels in [0, 1]: nats per image",
    }
    files.append(experiment.save_numbers(out, "frey_faces", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
