"""Conditional VAE (Sohn et al. 2015): class-conditional generation and style transfer.

    python -m experiments.conditional_vae --data-dir ../shared/data --epochs 10 --out runs/cvae

Trains ``--model cvae``: p(z) = N(0, I), p(x | z, y) = Bernoulli(f(z, y)), q(z | x, y), with
the one-hot label y given to decoder and encoder. Writes class_conditional.png (one row per
digit, columns are prior draws z ~ p(z), the same draws in every row), style_transfer.png
(a test digit of each class, then its style z = mean of q(z|x,y) decoded with every label)
and conditional_vae.json: test conditional -ELBO and the importance-sampled -log p(x | y)
(``--ll-samples``, 1000 by default) in nats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import data, evaluate, experiment, plots, predictive
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, model="cvae", ll_samples=1000)
    p.add_argument("--draws", action=Count, most=100, default=10, help="prior draws per class")
    args = experiment.parse(p, argv, ll_samples=20, draws=4)
    k_samples, args.ll_samples = args.ll_samples, 0  # estimated once, below, not also by the run
    run, out = experiment.trained_run(args, "conditional_vae")
    if run.model_config.model != "cvae":
        raise ValueError(f"{args.checkpoint} holds a {run.model_config.model} run, not a cvae")
    k, shape = run.model_config.num_classes, run.data.image_shape
    torch.manual_seed(args.seed)
    # the same z draws in every row: the label alone changes the digit
    z = run.model.prior().sample((args.draws,))
    y = torch.eye(k, device=z.device).repeat_interleave(args.draws, 0)
    images = run.model.decode(z.repeat(k, 1), y).mean.detach()
    fig = plots.grid_figure(
        images,
        shape,
        ncol=args.draws,
        row_labels=[f"y = {c}" for c in range(k)],
        title="E[x | z, y]: one row per label y, one column per draw z ~ p(z)",
    )
    files = [plots.save_figure(fig, out / "class_conditional.png")]

    labels = run.data.test_labels
    idx = torch.stack([(labels == c).nonzero()[0, 0] for c in range(k)])
    x, y_true = data.as_input(run.data.test[idx]), data.one_hot(labels[idx], k)
    transfer = predictive.style_transfer(run.model, run.guide, x, y_true)
    fig = plots.style_transfer_figure(x, transfer, shape)
    files.append(plots.save_figure(fig, out / "style_transfer.png"))

    result = evaluate.summary(run.model, run.guide, run.test_data, k_samples)
    numbers = {
        "dataset": run.data.name,
        "binarization": run.binarize,
        "epochs": run.trainer.epoch,
        "n_test": result["n_data"],
        "test_neg_elbo": -result["elbo"],
        "test_neg_log_likelihood_given_y": -result.get("log_likelihood", float("nan")),
        "stderr": result.get("log_likelihood_stderr", float("nan")),
        "importance_samples": result.get("importance_samples", 0),
    }
    files.append(experiment.save_numbers(out, "conditional_vae", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
