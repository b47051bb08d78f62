"""Attribute vectors: move a digit along a direction in latent space that means something.

    python -m experiments.attribute_vectors --epochs 10 --out runs/attribute_vectors

An attribute vector is the difference of mean encodings E_q[z|x] between data with and without
an attribute; adding growing multiples of it to other data's encodings and decoding changes
that attribute. Attributes for MNIST are measured from the pixels:

- ``thickness``: ink (sum of pixel values) standardised within each class, top quarter minus
  bottom quarter (so the vector is not a class change);
- ``slant``: the shear of the ink, cov(column, row) / var(row), top quarter minus bottom;
- ``class A->B`` (``--classes A B``): mean encoding of class B minus that of class A.

With ``--attributes FILE`` (CelebA's ``list_attr_celeba.txt`` layout: a count line, a line of
names, then ``name v1 v2 ...`` rows of +-1 aligned with the test set) any named attribute
(``--attribute Smiling``) works the same way. The vectors are estimated on the first half of the
test set and applied to images of the second half. Writes attribute_<name>.png and
attribute_vectors.json, which holds each attribute as measured on the decoded images at each
multiple: it should grow with the multiple.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count


def ink(x: torch.Tensor) -> torch.Tensor:
    return x.sum(1)


def slant(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Shear of the ink: positive when the top leans right."""
    _, h, w = data.chw(image_shape)
    img = x.reshape(-1, h, w)
    rows = torch.arange(h, dtype=x.dtype, device=x.device)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=x.dtype, device=x.device)[None, :].expand(h, w)
    mass = img.sum((1, 2)).clamp_min(1e-6)
    mr = (img * rows).sum((1, 2)) / mass
    mc = (img * cols).sum((1, 2)) / mass
    cov = (img * (rows - mr[:, None, None]) * (cols - mc[:, None, None])).sum((1, 2)) / mass
    var = (img * (rows - mr[:, None, None]) ** 2).sum((1, 2)) / mass
    return -cov / var.clamp_min(1e-6)


def within_class_zscore(values: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        return (values - values.mean()) / values.std()
    out = torch.zeros_like(values)
    for k in labels.unique():
        sel = labels == k
        if sel.sum() > 1:
            out[sel] = (values[sel] - values[sel].mean()) / values[sel].std().clamp_min(1e-6)
    return out


def quartile_masks(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = score.quantile(0.25), score.quantile(0.75)
    return score >= hi, score <= lo


def read_attribute_file(path: Path) -> tuple[list[str], torch.Tensor]:
    """CelebA's list_attr_celeba.txt: count, names, then 'file v1 v2 ...' rows of +-1."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    rows = [[int(v) for v in line.split()[1:]] for line in lines[2:] if line.strip()]
    values = torch.tensor(rows)
    if values.shape[1] != len(names):
        raise ValueError(f"{path}: {values.shape[1]} values per row but {len(names)} names")
    return names, values > 0


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__)
    p.add_argument(
        "--multiples", type=float, nargs="+", default=[-1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2]
    )
    p.add_argument(
        "--rows", action=Count, most=100, default=8, help="digits the vectors are added to"
    )
    p.add_argument(
        "--classes", action=Count, least=0, nargs=2, default=[4, 9], help="class A->B direction"
    )
    p.add_argument("--attributes", type=Path, default=None, help="CelebA-style attribute file")
    p.add_argument("--attribute", nargs="*", default=[], help="names in the attribute file")
    args = experiment.parse(p, argv, rows=3)
    run, out = experiment.trained_run(args, "attribute_vectors")
    x, labels, shape = data.as_input(run.data.test), run.data.test_labels, run.data.image_shape
    half = len(x) // 2
    z = latent.encode(run.guide, x)
    fit = slice(0, half)  # vectors from the first half; applied to the second
    lab = None if labels is None else labels[fit]

    measures = {
        "thickness": lambda images: ink(images),
        "slant": lambda images: slant(images, shape),
    }
    selections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        "thickness": quartile_masks(within_class_zscore(ink(x[fit]), lab)),
        "slant": quartile_masks(slant(x[fit], shape)),
    }
    if labels is not None:
        a, b = args.classes
        for c in (a, b):
            if not bool((lab == c).any()):
                present = sorted(set(lab.tolist()))
                raise ValueError(
                    f"--classes {a} {b}: no training datum has class {c} (the classes are "
                    f"{present[0]}..{present[-1]}): give two of those"
                )
        selections[f"class {a}->{b}"] = (lab == b, lab == a)
    if args.attributes is not None:
        names, table = read_attribute_file(args.attributes)
        for name in args.attribute:
            if name not in names:
                raise ValueError(f"attribute {name!r} not in {args.attributes}; it has {names}")
            has = table[: len(x), names.index(name)].to(x.device)[fit]
            selections[name] = (has, ~has)

    gen = torch.Generator().manual_seed(args.seed)
    pool = torch.arange(half, len(x))

    def pick(candidates: torch.Tensor) -> torch.Tensor:
        return candidates[torch.randperm(len(candidates), generator=gen)[: args.rows]]

    rows_default = pick(pool)
    multiples = torch.tensor(args.multiples)
    numbers: dict = {"multiples": args.multiples, "estimated_on": half, "attributes": {}}
    files = []
    for name, (with_attr, without) in selections.items():
        if not with_attr.any() or not without.any():
            print(f"skipping {name}: no data with or without it", file=sys.stderr)
            continue
        vector = z[fit][with_attr].mean(0) - z[fit][without].mean(0)
        rows = rows_default
        if name.startswith("class") and labels is not None:
            # a class direction is shown on digits of the class it starts from
            from_class = pool[(labels[half:] == args.classes[0]).cpu()]
            rows = pick(from_class) if len(from_class) else rows_default
        codes = z[rows.to(z.device)][:, None, :] + multiples.to(z.device)[None, :, None] * vector
        images = latent.decode(run.model, codes.reshape(-1, z.shape[1]))
        grid = torch.cat(
            [
                torch.cat([x[i : i + 1], images[r * len(multiples) : (r + 1) * len(multiples)]])
                for r, i in enumerate(rows.tolist())
            ]
        )
        fig = plots.grid_figure(
            grid,
            shape,
            ncol=len(multiples) + 1,
            title=f"{name}: data, then E[x | z + a v], a = {', '.join(map(str, args.multiples))}",
        )
        slug = name.replace(" ", "_").replace(">", "").replace("-", "_")
        files.append(plots.save_figure(fig, out / f"attribute_{slug}.png"))
        per_multiple = images.reshape(len(rows), len(multiples), -1)
        entry = {
            "vector_norm": vector.norm().item(),
            "n_with": int(with_attr.sum()),
            "n_without": int(without.sum()),
        }
        for measure, fn in measures.items():
            entry[f"{measure}_of_decoded_by_multiple"] = [
                fn(per_multiple[:, m]).mean().item() for m in range(len(multiples))
            ]
        numbers["attributes"][name] = entry
    files.append(experiment.save_numbers(out, "attribute_vectors", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
