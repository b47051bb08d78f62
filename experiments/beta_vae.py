"""β-VAE: latent traversals and active units for β in {1, 4}.

    python -m experiments.beta_vae --epochs 10 --z-dim 10 --out runs/beta_vae

For each β a VAE is trained on the β-weighted objective E_q[log p(x|z)] - β KL (the KL weight
comes from ``objectives.ScaleLatents`` inside the trainer). The traversal figure has one row
per latent dimension: starting from a test digit's encoding, that coordinate is set to evenly
spaced values from -3 to 3 and E[x|z] decoded. A unit is active when the variance over the test
set of its posterior mean, Cov_x(E_q[z_i|x]), exceeds 0.01 (Burda et al. 2015). Writes
beta_vae_traversal_beta{β}.png and beta_vae.json (active units, per-unit variances, test ELBO
and its KL term per β).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import experiment, latent, plots
from pyro_vae.options import Count

ACTIVE = 0.01


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, z_dim=10)
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--steps", action=Count, most=100, default=9, help="values per traversal row")
    args = experiment.parse(p, argv, z_dim=4, steps=5)
    if args.checkpoint:
        raise ValueError("beta_vae trains one model per β: run it without --checkpoint")
    out = experiment.output_folder(args, "beta_vae")
    numbers: dict = {"active_threshold": ACTIVE}
    files = []
    beta_arg = args.beta
    for beta in args.betas:
        args.beta = beta
        run = experiment.train_variant(args, out / f"beta{beta:g}")
        z = latent.encode(run.guide, run.data.test)
        variances = z.var(0)
        base = z[0]
        values = torch.linspace(-3, 3, args.steps)
        codes = base.repeat(run.model.z_dim, args.steps, 1)
        for i in range(run.model.z_dim):
            codes[i, :, i] = values.to(codes.device)
        images = latent.decode(run.model, codes.reshape(-1, run.model.z_dim))
        labels = [
            f"z{i + 1} ({'active' if v > ACTIVE else 'inactive'})"
            for i, v in enumerate(variances.tolist())
        ]
        fig = plots.grid_figure(
            images,
            run.data.image_shape,
            ncol=args.steps,
            row_labels=labels,
            title=f"β = {beta:g}: one row per latent coordinate, set to -3 ... 3",
        )
        files.append(plots.save_figure(fig, out / f"beta_vae_traversal_beta{beta:g}.png"))
        last = run.trainer.history[-1]
        numbers[f"beta={beta:g}"] = {
            "active_units": int((variances > ACTIVE).sum()),
            "posterior_mean_variances": variances.tolist(),
            "test_elbo": last["test_elbo"],
            "test_kl": last["test_kl"],
        }
    args.beta = beta_arg
    files.append(experiment.save_numbers(out, "beta_vae", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
