"""A plain autoencoder beside a VAE of the same networks, for z_dim 2 and 10.

    python -m experiments.autoencoder_vs_vae --epochs 10 --out runs/autoencoder_vs_vae

The autoencoder is written in Pyro too: the same model with a flat prior (``priors.Flat``,
log p(z) = 0) and a point-mass guide q(z|x) = δ(z - f(x)) (``guides.DeltaGuide``). Its ELBO is
then exactly the reconstruction log-likelihood log p(x | f(x)): a deterministic autoencoder
trained on cross-entropy, by the same SVI routine. The VAE has the N(0, I) prior and the
Normal guide.

For each model and z_dim, the figure shows the test encodings (the first two coordinates)
with the circle about their mean that holds 99% of them, and the images decoded on a square
lattice inscribed in that circle (the other coordinates held at the encodings' mean). The
VAE's lattice decodes to digits almost everywhere; the autoencoder's leaves holes. Writes
autoencoder_vs_vae_z{2,10}.png and autoencoder_vs_vae.json (circle radii, and the fraction of
lattice images' decoded distributions: mean entropy of p(x|z), high where the decoder is
undecided, beside the same at the test encodings).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count

MODELS = {"autoencoder": {"prior": "flat", "guide": "delta"}, "VAE": {}}


def lattice(center: torch.Tensor, radius: float, n: int) -> torch.Tensor:
    """An n x n square lattice inscribed in the circle (half side radius / sqrt 2), row by
    row from the top: (n * n, 2) points."""
    axis = torch.linspace(-radius / 2**0.5, radius / 2**0.5, n)
    ys, xs = torch.meshgrid(center[1] + axis.flip(0), center[0] + axis, indexing="ij")
    return torch.stack([xs, ys], -1).reshape(n * n, 2)


def mean_entropy(model: torch.nn.Module, z: torch.Tensor) -> float:
    """Mean entropy (nats) of p(x|z) over codes: blurred, undecided images score high."""
    with torch.no_grad():
        return model.decode(z).entropy().mean().item()


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__)
    p.add_argument("--z-dims", action=Count, nargs="+", default=[2, 10])
    p.add_argument("--lattice", action=Count, most=100, default=12, help="lattice sites per side")
    p.add_argument("--n", action=Count, default=5000, help="test encodings plotted")
    args = experiment.parse(p, argv, lattice=4, n=128)
    if args.checkpoint:
        raise ValueError("autoencoder_vs_vae trains its four models: run it without --checkpoint")
    out = experiment.output_folder(args, "autoencoder_vs_vae")
    numbers: dict = {}
    files = []
    for z_dim in args.z_dims:
        fig, axes = plt.subplots(2, 2, figsize=(10, 10.5))
        for col, (name, changes) in enumerate(MODELS.items()):
            run = experiment.train_variant(
                args, out / f"{name.lower()}-z{z_dim}", z_dim=z_dim, **changes
            )
            x, labels = data.as_input(run.data.test[: args.n]), run.data.test_labels
            z = latent.encode(run.guide, x)
            center = z.mean(0)
            plane = z[:, :2].cpu()
            radius = float((plane - center[:2].cpu()).norm(dim=1).quantile(0.99))
            grid2 = lattice(center[:2].cpu(), radius, args.lattice)
            codes = center.repeat(len(grid2), 1)
            codes[:, :2] = grid2.to(codes.device)
            images = latent.decode(run.model, codes)
            ax = axes[0, col]
            lab = None if labels is None else labels[: args.n].cpu()
            cmap = plt.get_cmap("tab10")
            for k in [None] if lab is None else lab.unique().tolist():
                sel = slice(None) if k is None else lab == k
                ax.scatter(
                    plane[sel, 0],
                    plane[sel, 1],
                    s=2,
                    alpha=0.5,
                    color=None if k is None else cmap(k),
                    label=k,
                )
            ax.add_patch(plt.Circle(center[:2].cpu().tolist(), radius, fill=False, ls="--"))
            half = radius / 2**0.5
            ax.add_patch(
                plt.Rectangle(
                    (center[0].item() - half, center[1].item() - half),
                    2 * half,
                    2 * half,
                    fill=False,
                    color="gray",
                )
            )
            ax.set_aspect("equal")
            ax.set_title(f"{name}, z_dim={z_dim}: test encodings, 99% circle", fontsize=9)
            if lab is not None and col == 0:
                ax.legend(markerscale=4, fontsize=7, ncol=2)
            ax = axes[1, col]
            ax.imshow(
                plots.tile(images, run.data.image_shape, args.lattice).numpy(),
                cmap="gray_r",
                vmin=0,
                vmax=1,
            )
            ax.set_axis_off()
            ax.set_title(f"{name}: E[x|z] on the inscribed square lattice", fontsize=9)
            numbers[f"{name}-z{z_dim}"] = {
                "radius_99": radius,
                "test_elbo": run.trainer.history[-1]["test_elbo"],
                "entropy_at_test_encodings": mean_entropy(run.model, z),
                "entropy_on_lattice": mean_entropy(run.model, codes),
            }
        fig.tight_layout()
        files.append(plots.save_figure(fig, out / f"autoencoder_vs_vae_z{z_dim}.png"))
    files.append(experiment.save_numbers(out, "autoencoder_vs_vae", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
