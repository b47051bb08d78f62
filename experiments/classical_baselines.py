"""Generative models before VAEs, beside the VAE: class-conditional samples and test densities.

    python -m experiments.classical_baselines --epochs 10 --out runs/classical_baselines

Per digit class c, fitted to the training grey levels (scikit-learn for the mixtures):

- Bayes-classifier sampler: one Gaussian N(mean_c, cov_c + eps I) with the class's mean and
  covariance (eps keeps it positive definite);
- Gaussian mixture (``GaussianMixture``, full covariances);
- variational Bayesian Gaussian mixture (``BayesianGaussianMixture``, Dirichlet-process prior
  on the weights);
- the VAE: a Gaussian fitted to the class's encodings E_q[z|x], sampled and decoded (E[x|z]).

Test log-likelihoods: the Gaussian models are densities over grey levels in [0, 1]^784, so their
log p(x) = log sum_c p(c) p(x|c) is reported in nats per image on the test grey levels. The VAE
models binarized digits with a Bernoulli likelihood: its numbers (ELBO; importance-sampled
log p(x) with --ll-samples) are log-probabilities of binary images, not densities, and are not
comparable with the Gaussians'. Writes classical_baselines.png and classical_baselines.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.distributions import MultivariateNormal

from pyro_vae import data, experiment, latent, plots
from pyro_vae.options import Count


def class_gaussian(x: torch.Tensor, eps: float) -> MultivariateNormal:
    cov = torch.cov(x.T.double()) + eps * torch.eye(x.shape[1], dtype=torch.float64)
    return MultivariateNormal(x.double().mean(0), covariance_matrix=cov)


def mixture_log_density(per_class: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """log sum_c p(c) p(x|c) from per-class log-densities (n, classes)."""
    return torch.logsumexp(per_class + prior.log(), dim=1)


def mixture_sample(gm: object, k: int) -> torch.Tensor:
    """k draws from a fitted scikit-learn (Bayesian) Gaussian mixture, by Cholesky factors
    (BayesianGaussianMixture has no ``sample``; numpy's per-draw SVD is slow in 784-D)."""
    weights = torch.from_numpy(gm.weights_ / gm.weights_.sum())
    comp = torch.multinomial(weights, k, replacement=True).numpy()
    chol = torch.linalg.cholesky(torch.from_numpy(gm.covariances_[comp]))
    eps = torch.randn(k, chol.shape[-1], 1, dtype=chol.dtype)
    return (torch.from_numpy(gm.means_[comp]) + (chol @ eps).squeeze(-1)).float()


def main(argv: Sequence[str] | None = None) -> dict:
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
    from threadpoolctl import threadpool_limits

    p = experiment.parser(__name__, __doc__)
    p.add_argument(
        "--samples", action=Count, most=100, default=6, help="samples per digit and model"
    )
    p.add_argument("--components", action=Count, default=5, help="mixture components per class")
    p.add_argument("--max-iter", action=Count, default=25, help="EM / variational iterations")
    p.add_argument("--eps", type=float, default=0.01, help="added to covariance diagonals")
    args = experiment.parse(p, argv, components=2, max_iter=3, samples=3)
    run, out = experiment.trained_run(args, "classical_baselines")
    grey = data.load(run.train_config.dataset, run.train_config.data_dir).subset(
        run.train_config.train_size, run.train_config.test_size
    )
    grey = replace(grey, train=data.as_input(grey.train), test=data.as_input(grey.test))
    if grey.train_labels is None:
        raise ValueError(f"{grey.name} has no labels: the baselines are fitted per class")
    classes = grey.train_labels.unique().tolist()
    prior = torch.bincount(grey.train_labels, minlength=len(classes)).double()
    prior = prior[classes] / prior.sum()
    k, rng = args.samples, np.random.RandomState(args.seed)
    torch.manual_seed(args.seed)
    samples: dict[str, list[torch.Tensor]] = {
        m: [] for m in ("Bayes classifier", "GMM", "VB-GMM", "VAE (latent Gaussian)")
    }
    test_log_density: dict[str, list[torch.Tensor]] = {
        m: [] for m in ("Bayes classifier", "GMM", "VB-GMM")
    }
    seconds: dict[str, float] = {m: 0.0 for m in test_log_density}
    z_train = latent.encode(
        run.guide,
        run.data.train.to(run.trainer.device)
        if run.binarize != "dynamic"
        else torch.bernoulli(data.as_input(run.data.train)),
    )
    for c in classes:
        xc = grey.train[grey.train_labels == c]
        start = time.perf_counter()
        gauss = class_gaussian(xc, args.eps)
        samples["Bayes classifier"].append(gauss.sample((k,)).float())
        test_log_density["Bayes classifier"].append(gauss.log_prob(grey.test.double()))
        seconds["Bayes classifier"] += time.perf_counter() - start
        for name, cls, extra in (
            ("GMM", GaussianMixture, {}),
            (
                "VB-GMM",
                BayesianGaussianMixture,
                {"weight_concentration_prior_type": "dirichlet_process"},
            ),
        ):
            start = time.perf_counter()
            gm = cls(
                n_components=min(args.components, len(xc)),
                covariance_type="full",
                reg_covar=args.eps,
                max_iter=args.max_iter,
                random_state=rng,
                **extra,
            )
            # one thread: scikit-learn's OpenMP runtime and torch's contend for the cores
            with threadpool_limits(1):
                gm.fit(xc.numpy())
            samples[name].append(mixture_sample(gm, k))
            test_log_density[name].append(torch.from_numpy(gm.score_samples(grey.test.numpy())))
            seconds[name] += time.perf_counter() - start
        zc = z_train[run.data.train_labels.to(z_train.device) == c].cpu()
        zg = class_gaussian(zc, 1e-4)
        z = zg.sample((k,)).float().to(run.trainer.device)
        samples["VAE (latent Gaussian)"].append(latent.decode(run.model, z).cpu())

    numbers: dict = {
        "data": f"{grey.name} grey levels, {len(grey.test)} test images",
        "units": "nats per image; Gaussian densities on [0,1]^784 grey levels",
    }
    for name, per_class in test_log_density.items():
        ll = mixture_log_density(torch.stack(per_class, 1), prior)
        numbers[name] = {
            "test_log_density": ll.mean().item(),
            "stderr": (ll.std() / math.sqrt(len(ll))).item(),
            "fit_seconds": seconds[name],
        }
    numbers["VAE"] = {
        "test_elbo_binarized": run.trainer.history[-1]["test_elbo"]
        if run.trainer.history
        else None,
        "note": "Bernoulli log-probability of binarized digits, not a density: not comparable",
    }

    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 5.2))
    for ax, (name, per_class) in zip(axes, samples.items(), strict=True):
        images = torch.cat(per_class).clamp(0, 1)
        ax.imshow(plots.tile(images, grey.image_shape, k).numpy(), cmap="gray_r", vmin=0, vmax=1)
        h = data.chw(grey.image_shape)[1]
        ax.set_yticks(
            [r * (h + plots.GAP) + h / 2 for r in range(len(classes))], [str(c) for c in classes]
        )
        ax.set_xticks([])
        ll = numbers.get(name, {}).get("test_log_density")
        ax.set_title(
            name
            + (
                f"\ntest log p(x) = {ll:.0f} nats"
                if ll is not None
                else "\n(Bernoulli model: see JSON)"
            ),
            fontsize=9,
        )
    fig.tight_layout(rect=(0, 0, 1, 0.96))  # room for the two-line titles
    files = [
        plots.save_figure(fig, out / "classical_baselines.png"),
        experiment.save_numbers(out, "classical_baselines", numbers),
    ]
    experiment.done(out, files)
    return numbers


if __name__ == "__main__":
    main()
