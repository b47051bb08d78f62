"""CelebA faces and their attribute vectors: a convolutional VAE on 64 x 64 x 3 faces.

    pyro-vae run celeba_attributes --data-dir ../shared/data --out runs/celeba

As the seed "VAEs are beautiful" shows it: z ~ N(0, I), x ~ p(x | z) with a convolutional
decoder over 64 x 64 colour faces (CelebA's aligned faces, the central crop resized; the 40
attributes come with them). An attribute vector is the difference of the mean codes
E_q[z | x] of training faces with and without an attribute (Blond_Hair, Eyeglasses, Smiling,
and two at once as the sum of their vectors); adding growing multiples of it to the codes of
test faces that lack the attribute and decoding puts it on them. The check that an edit works
is not read off the codes (z + a v is linear in a by construction) but off the images: a
linear probe (logistic regression on the training codes) scores each decoded image after it is
encoded again, and its mean probability of the attribute should grow with the multiple.

Writes, beside the run's own reconstructions.png and prior_samples.png: attribute_<name>.png
(one row per face, one column per multiple, the original at the left unless
``--no-inputs``), interpolation.png
(paths between pairs of test faces) and celeba_attributes.json (test ELBO and bits/dim with k,
how many faces have each attribute, the probe's accuracy and its mean probability at each
multiple, and whether it grows). CelebA's license is non-commercial research: the images are
read from the data folder (``--data-dir`` holding ``celeba/``, or ``--dataset celeba:PATH``),
never copied into the repository (the README's gallery shows decoded images only).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count

ATTRIBUTES = ("Blond_Hair", "Eyeglasses", "Smiling")
PAIRS = ("Blond_Hair+Eyeglasses",)


def probe(z: torch.Tensor, y: torch.Tensor, steps: int = 200) -> torch.nn.Linear:
    """A logistic regression of the attribute ``y`` on codes ``z`` (full-batch L-BFGS with a
    small L2 penalty on standardised codes folded into the weights)."""
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    zs = (z - mean) / std
    lin = torch.nn.Linear(z.shape[1], 1).to(z.device)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    target = y.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(lin(zs).squeeze(1), target)
            + 1e-3 * lin.weight.pow(2).sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        lin.weight /= std
        lin.bias -= (lin.weight * mean).sum()
    return lin.requires_grad_(False)


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(
        __name__,
        __doc__,
        dataset="celeba",
        image_size=64,
        net="conv",
        likelihood="logistic256",
        z_dim=128,
        hidden=[512],
        epochs=20,
        ll_samples=100,
    )
    p.add_argument("--attributes", nargs="+", default=list(ATTRIBUTES), help="names to move")
    p.add_argument("--pairs", nargs="*", default=list(PAIRS), help="two at once, as NAME+NAME")
    p.add_argument("--multiples", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2, 2.5, 3])
    p.add_argument(
        "--rows", action=Count, most=100, default=6, help="test faces each vector is added to"
    )
    p.add_argument(
        "--steps", action=Count, most=100, default=9, help="images along each interpolation"
    )
    p.add_argument(
        "--inputs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show each test face beside its edits (--no-inputs: decoded images only, for "
        "figures published where CelebA's license does not let its photographs go)",
    )
    args = experiment.parse(p, argv, image_size=16, z_dim=8, rows=2, ll_samples=10)
    run, out = experiment.trained_run(args, "celeba_attributes")
    ds, shape = run.data, run.data.image_shape
    names = [*args.attributes, *args.pairs]
    parts = {name: name.split("+") for name in names}
    for name in {a for ps in parts.values() for a in ps}:
        data.attribute(ds, name)  # an unknown name stops here, with the names there are

    z_train = latent.encode(run.guide, ds.train)
    z_test = latent.encode(run.guide, ds.test)
    gen = torch.Generator().manual_seed(args.seed)
    multiples = torch.tensor(args.multiples, device=z_test.device)
    numbers: dict = {
        "data": f"{ds.name}: {len(ds.train)} train / {len(ds.test)} test faces, {shape}",
        "multiples": args.multiples,
        "attributes": {},
    }
    files = []
    for name, members in parts.items():
        has_train = torch.stack([data.attribute(ds, a, "train") for a in members]).all(0)
        has_test = torch.stack([data.attribute(ds, a, "test") for a in members]).all(0)
        vector = sum(
            z_train[data.attribute(ds, a, "train").to(z_train.device)].mean(0)
            - z_train[~data.attribute(ds, a, "train").to(z_train.device)].mean(0)
            for a in members
        )
        lin = probe(z_train, has_train.to(z_train.device))
        accuracy = ((lin(z_test).squeeze(1) > 0).cpu() == has_test).float().mean().item()
        # faces that lack the attribute(s), chosen with the seed
        lacking = (~has_test).nonzero().squeeze(1)
        rows = lacking[torch.randperm(len(lacking), generator=gen)[: args.rows]]
        codes = z_test[rows.to(z_test.device)][:, None] + multiples[None, :, None] * vector
        images = latent.decode(run.model, codes.reshape(-1, z_test.shape[1])).clamp(0, 1)
        reencoded = latent.encode(run.guide, images)
        score = torch.sigmoid(lin(reencoded)).reshape(len(rows), len(multiples)).mean(0)
        grid = images
        labels = [f"{m:g}" for m in args.multiples]
        if args.inputs:
            originals = data.as_input(ds.test[rows.to(ds.test.device)]).to(images.device)
            per_row = images.reshape(len(rows), len(multiples), -1)
            grid = torch.cat(
                [torch.cat([originals[i : i + 1], per_row[i]]) for i in range(len(rows))]
            )
            labels = ["input", *labels]
        path = out / f"attribute_{name.replace('+', '_and_')}.png"
        files.append(
            plots.save_figure(
                plots.grid_figure(
                    grid,
                    shape,
                    ncol=len(labels),
                    col_labels=labels,
                    title=f"{name}: decoded z + a v, v = mean code of faces with it minus "
                    "mean code of faces without (a per column)",
                ),
                path,
            )
        )
        numbers["attributes"][name] = {
            "train_faces_with": int(has_train.sum()),
            "test_faces_with": int(has_test.sum()),
            "vector_norm": vector.norm().item(),
            "probe_test_accuracy": accuracy,
            "probe_share_without": 1 - has_test.float().mean().item(),
            "probe_probability_by_multiple": score.tolist(),
            "grows_with_multiple": bool((score.diff() > 0).all()),
        }

    # interpolation between pairs of test faces, through the codes
    pairs = torch.randperm(len(ds.test), generator=gen)[: 2 * args.rows].reshape(-1, 2)
    path_rows = []
    for i, j in pairs.tolist():
        steps = latent.lerp(z_test[i], z_test[j], args.steps)
        path_rows.append(latent.decode(run.model, steps).clamp(0, 1))
    files.append(
        plots.save_grid(
            out / "interpolation.png",
            torch.cat(path_rows),
            shape,
            ncol=args.steps,
            title="E[x|z] along straight paths between the codes of two test faces",
        )
    )
    result = experiment.evaluation(run.out) or {}
    numbers |= {
        key: result[key]
        for key in (
            "elbo",
            "log_likelihood",
            "log_likelihood_stderr",
            "importance_samples",
            "bits_per_dim",
            "elbo_bits_per_dim",
            "bits_per_dim_kind",
            "epochs",
        )
        if key in result
    }
    files.append(experiment.save_numbers(out, "celeba_attributes", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
