"""Prior- and posterior-predictive samples.

    python -m experiments.samples --epochs 10 --out runs/samples

- prior predictive: z ~ p(z), decoded to Bernoulli means E[x|z] and to binary draws x ~ p(x|z);
- posterior predictive: for given test digits (first column), z ~ q(z|x) and x' ~ p(x'|z),
  each row one digit, each column a new draw (means and binary draws).

Writes prior_predictive.png, posterior_predictive.png and samples.json (the test indices and
the average log p(x|z) of each digit under its posterior draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_vae import data, experiment, plots, predictive
from pyro_vae.options import Count


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__)
    p.add_argument("--n", action=Count, most=100, default=10, help="columns (draws) per row")
    p.add_argument(
        "--digits", action=Count, most=100, default=6, help="test digits for the posterior rows"
    )
    args = experiment.parse(p, argv)
    run, out = experiment.trained_run(args, "samples")
    if args.digits > len(run.data.test):
        raise ValueError(
            f"--digits {args.digits}: the test set holds {len(run.data.test)}: ask for fewer"
        )
    shape, n = run.data.image_shape, args.n
    torch.manual_seed(args.seed)

    prior = predictive.prior_predictive(run.model, n * n)
    fig = plots.grid_figure(
        torch.cat([prior["mean"][: n * n // 2], prior["x"][n * n // 2 :]]),
        shape,
        ncol=n,
        title="z ~ p(z): Bernoulli means E[x|z] (top half), binary draws x ~ p(x|z) (bottom half)",
    )
    files = [plots.save_figure(fig, out / "prior_predictive.png")]

    idx = torch.randperm(len(run.data.test), generator=torch.Generator().manual_seed(args.seed))
    idx = idx[: args.digits].to(run.data.test.device)
    x = data.as_input(run.data.test[idx])
    post = predictive.posterior_predictive(run.model, run.guide, x, num_samples=n)
    rows = []
    for i in range(args.digits):
        rows += [x[i : i + 1], post["mean"][:, i], x[i : i + 1], post["x"][:, i]]
    fig = plots.grid_figure(
        torch.cat(rows),
        shape,
        ncol=n + 1,
        row_labels=[s for _ in range(args.digits) for s in ("mean", "draw")],
        title="test digit (first column), then z ~ q(z|x) decoded: means and binary draws",
    )
    files.append(plots.save_figure(fig, out / "posterior_predictive.png"))
    with torch.no_grad():
        log_lik = run.model.decode(post["z"]).log_prob(x).mean(0)
    numbers = {
        "test_indices": idx.tolist(),
        "posterior_draws": n,
        "mean_log_p_x_given_z": log_lik.tolist(),
    }
    files.append(experiment.save_numbers(out, "samples", numbers))
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
