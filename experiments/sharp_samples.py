"""Sharper samples: the conv VAE against VAE-GAN, the perceptual and the MS-SSIM likelihoods.

    pyro-vae run sharp_samples --dataset celeba --data-dir ../shared/data \\
        --likelihood logistic256 --z-dim 128 --hidden 512 --epochs 10 --out runs/sharp_celeba

Each model is the same convolutional VAE (``--net conv``, the command line's prior, guide and
sizes, equal epochs) with one likelihood swapped: ``vae`` keeps ``--likelihood`` (the baseline;
a normalised likelihood), ``vaegan`` learns its similarity with a discriminator (Larsen et al.
2016), ``perceptual`` matches a frozen classifier's features (Hou et al. 2017), ``msssim``
matches structure (MS-SSIM). Every model's prior samples and reconstructions E[x|z] are scored
against the same test images in the same features (:mod:`pyro_vae.quality`: Fréchet distance,
precision, recall, sharpness relative to the data). Writes sharp_samples.png (rows: test
images unless ``--no-inputs``, then each model's prior samples and reconstructions),
sharp_samples.json and sharp_samples.md (the table: FD, precision, recall, sharpness, test
ELBO and bits/dim where the likelihood is normalised, s/epoch), and one run folder per model.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from pyro_vae import data, experiment, plots, quality
from pyro_vae import run as runs
from pyro_vae.options import Count

# model name -> the likelihood it trains with (None: the command line's --likelihood)
MODELS = {"vae": None, "vaegan": "vaegan", "perceptual": "perceptual", "msssim": "msssim"}
SHOWN = 8  # images per row of the figure


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, net="conv")
    p.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(MODELS),
        help="which models to train and compare",
    )
    p.add_argument(
        "--quality-samples",
        action=Count,
        least=quality.K + 1,
        most=quality.MAX_N,
        default=1000,
        help="generated and real images per score",
    )
    p.add_argument("--features", default="auto", help="as pyro-vae evaluate --features")
    p.add_argument(
        "--inputs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a first row of the test images (--no-inputs: decoded images only, for data whose "
        "license keeps them out of a repository, such as CelebA)",
    )
    args = experiment.parse(
        p, argv, net="conv", quality_samples=32, z_dim=8, train_size=256, test_size=64
    )
    if args.checkpoint:
        raise ValueError(
            "sharp_samples trains one model per likelihood: run it without --checkpoint"
        )
    if args.net != "conv":
        raise ValueError("sharp_samples compares convolutional VAEs: leave --net conv")
    out = experiment.output_folder(args, "sharp_samples")
    baseline = args.likelihood
    numbers: dict = {"n": None, "features": None, "models": {}}
    features = None
    rows, labels = [], []
    for name in args.models:
        likelihood = MODELS[name] or baseline
        run = experiment.train_variant(args, out / name, likelihood=likelihood)
        if features is None:
            grey = grey_levels(run)
            features = quality.resolve(args.features, grey, device=run.trainer.device)
            real, _ = quality.real_images(run, SHOWN, dataset=grey)
            if args.inputs:
                rows.append(real.cpu())
                labels.append("test data")
        scores = quality.score(run, features, args.quality_samples, dataset=grey)
        numbers["n"], numbers["features"] = scores["n"], scores["metric"]
        numbers["feature_network"] = scores.get("feature_network")
        evaluation = experiment.evaluation(out / name) or {}
        seconds = [row["seconds"] for row in run.trainer.history]
        numbers["models"][name] = {
            "likelihood": likelihood,
            "prior": scores["prior"],
            "reconstructions": scores["reconstructions"],
            "test_elbo": evaluation.get("elbo"),
            "elbo_kind": evaluation.get("elbo_kind", "ELBO"),
            "elbo_bits_per_dim": evaluation.get("elbo_bits_per_dim"),
            "seconds_per_epoch": statistics.median(seconds) if seconds else None,
            "epochs": run.trainer.epoch,
        }
        with torch.no_grad():
            x = real.to(run.trainer.device)
            rows.append(run.sample(SHOWN, seed=0).cpu())
            rows.append(run.reconstruct(x).cpu())
        labels += [f"{name}: samples", f"{name}: reconstructions"]
    shape = rows[0].shape[1:]
    fig = plots.grid_figure(
        torch.cat([r.reshape(len(r), -1) for r in rows]),
        shape,
        ncol=SHOWN,
        row_labels=labels,
        title=f"prior samples E[x|z], z ~ p(z), and reconstructions, {args.epochs} epochs each",
    )
    files = [plots.save_figure(fig, out / "sharp_samples.png")]
    files.append(experiment.save_numbers(out, "sharp_samples", numbers))
    files.append(write_table(out / "sharp_samples.md", numbers))
    experiment.done(out, files)
    return numbers


def grey_levels(run: runs.Run) -> data.Dataset:
    """The run's data as loaded, grey levels unbinarized: the one reference of every model
    (a Bernoulli VAE reads its test digits binarized, the pseudo-likelihoods read them grey)."""
    config = run.train_config
    loaded = data.load(config.dataset, config.data_dir, config.image_size)
    return loaded.subset(config.train_size, config.test_size)


def write_table(path: Path, numbers: dict) -> Path:
    """The table of the models' numbers, as Markdown."""
    metric = numbers["features"]
    lines = [
        f"| model | {metric} prior | precision | recall | sharpness | {metric} recon. | "
        "test ELBO (nats) | bits/dim | s/epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in numbers["models"].items():
        p, r = m["prior"], m["reconstructions"]
        elbo = f"{m['test_elbo']:.1f}" if m["test_elbo"] is not None else "—"
        if m["elbo_kind"] != "ELBO":
            elbo += " (pseudo)"
        bpd = f"{m['elbo_bits_per_dim']:.3f}" if m["elbo_bits_per_dim"] is not None else "—"
        secs = f"{m['seconds_per_epoch']:.1f}" if m["seconds_per_epoch"] is not None else "—"
        lines.append(
            f"| {name} ({m['likelihood']}) | {p['fd']:.2f} | {p['precision']:.3f} | "
            f"{p['recall']:.3f} | {p['sharpness_ratio']:.2f} | {r['fd']:.2f} | {elbo} | {bpd} | "
            f"{secs} |"
        )
    note = f"\n{metric} on n = {numbers['n']} images; sharpness: Laplacian variance / data's.\n"
    path.write_text("\n".join(lines) + "\n" + note)
    return path


if __name__ == "__main__":
    main()
