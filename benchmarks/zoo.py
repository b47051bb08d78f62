"""The model zoo on one data set with the same networks and budget: one row per model.

    python benchmarks/zoo.py --data-dir ../shared/data --epochs 5 --train-size 20000

Every model is the same MLP VAE (``--hidden``, ``--z-dim``, Adam 1e-3, batch 128, dynamic
binarization on MNIST) with the pieces that make it that model swapped in (a guide, a prior,
an objective, a model kind). Each is trained through ``pyro_vae.run.train`` (its folder under
``--out``) and scored on the same test data:

- test ELBO and importance-sampled log p(x) (k = ``--ll-samples``, nats per datum), where the
  guide is a density to sample from (all but RAE's point encoder; pythae reports neither);
  JointVAE's rows add log p(x) with the category summed out exactly, and the categories'
  accuracy as classes;
- reconstruction error: mean squared error of E[x | z], z the guide's point summary, per datum;
- FD, precision and recall of 1,000 prior samples E[x|z] (:mod:`pyro_vae.quality`, features of
  the data set's own classifier: ``FD-mnist-classes``, never to be read as FID), and of as many
  draws from each ex-post sampler fitted to the training codes (``--samplers``: a 10-component
  Gaussian mixture, a 4-layer MAF, a two-stage VAE; :mod:`pyro_vae.samplers`), the best shown;
- seconds per epoch (median).

Writes ``zoo.json`` and ``zoo.md`` into ``--out`` after every row.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from pyro_vae import data, quality, samplers
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig


@dataclass(frozen=True)
class Entry:
    """One model: the pieces that differ from the VAE's, and where it comes from."""

    what: str
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    train: dict = field(default_factory=dict)  # TrainConfig overrides


ZOO: dict[str, Entry] = {
    "vae": Entry("VAE (Kingma & Welling 2014)"),
    "beta-vae": Entry("β-VAE, β = 4 (Higgins et al. 2017)", train={"beta": 4.0}),
    "iwae": Entry("IWAE, k = 5 (Burda et al. 2015)", train={"elbo": "iwae", "num_particles": 5}),
    "miwae": Entry(
        "MIWAE, M = 5, K = 5 (Rainforth et al. 2018)",
        train={"elbo": "miwae", "num_particles": 5, "iw_estimates": 5},
    ),
    "ciwae": Entry(
        "CIWAE, β = 0.5, K = 5 (Rainforth et al. 2018)",
        train={"elbo": "ciwae", "num_particles": 5},
    ),
    "piwae": Entry(
        "PIWAE, M = 5, K = 5 (Rainforth et al. 2018)",
        train={"elbo": "piwae", "num_particles": 5, "iw_estimates": 5},
    ),
    "wae-mmd": Entry("WAE-MMD, λ = 100, IMQ (Tolstikhin et al. 2018)", train={"elbo": "wae-mmd"}),
    "info-mmd": Entry("InfoVAE-MMD, α = 0, λ = 100 (Zhao et al. 2019)", train={"elbo": "info-mmd"}),
    "swae": Entry("SWAE, λ = 10, 50 directions (Kolouri et al. 2019)", train={"elbo": "swae"}),
    "dip-i": Entry("DIP-VAE-I, λ_od = λ_d = 10 (Kumar et al. 2018)", train={"elbo": "dip-i"}),
    "dip-ii": Entry("DIP-VAE-II, λ_od = λ_d = 10 (Kumar et al. 2018)", train={"elbo": "dip-ii"}),
    "factorvae": Entry("FactorVAE, γ = 10 (Kim & Mnih 2018)", train={"elbo": "factorvae"}),
    "aae": Entry("adversarial AE, λ = 1 (Makhzani et al. 2016)", train={"elbo": "aae"}),
    "rae": Entry(
        "RAE-L2: point encoder, N(0, I) on z, decay 1e-3 (Ghosh et al. 2020)",
        model={"guide": "delta"},
        train={"weight_decay": 1e-3},
    ),
    "hvae-hmc": Entry(
        "Hamiltonian VAE, K = 5, ε = 0.05, β_0 = 0.5 (Caterini et al. 2018)",
        train={"elbo": "hvae-hmc"},
    ),
    "planar": Entry(
        "VAE with 8 planar flows (Rezende & Mohamed 2015)",
        model={"guide": "flow", "flow": "planar:8"},
    ),
    "radial": Entry(
        "VAE with 8 radial flows (Rezende & Mohamed 2015)",
        model={"guide": "flow", "flow": "radial:8"},
    ),
    "householder": Entry(
        "VAE with 4 Householder flows (Tomczak & Welling 2016)",
        model={"guide": "flow", "flow": "householder:4"},
    ),
    "sylvester": Entry(
        "VAE with 2 Sylvester flows, global (van den Berg et al. 2018)",
        model={"guide": "flow", "flow": "sylvester:2"},
    ),
    "naf": Entry(
        "VAE with 2 neural autoregressive flows (Huang et al. 2018)",
        model={"guide": "flow", "flow": "naf:2"},
    ),
    "iaf": Entry("VAE with 2 IAFs (Kingma et al. 2016)", model={"guide": "iaf"}),
    "vampprior": Entry(
        "VampPrior, 500 pseudo-inputs (Tomczak & Welling 2018)",
        model={"prior": "vampprior", "prior_components": 500},
    ),
    "mog-prior": Entry(
        "mixture-of-Gaussians prior, 10", model={"prior": "mog", "prior_components": 10}
    ),
    "tcvae": Entry("β-TCVAE, β = 6 (Chen et al. 2018)", train={"elbo": "tcvae"}),
    "logcosh": Entry(
        "log-cosh VAE, a = 10 (PyTorch-VAE's LogCoshVAE), on grey levels",
        model={"likelihood": "logcosh"},
    ),
    "hyperspherical": Entry(
        "hyperspherical VAE: power spherical q, uniform prior (De Cao & Aziz 2020)",
        model={"guide": "spherical", "prior": "spherical"},
    ),
    "vqvae": Entry(
        "VQ-VAE, 128 vectors of 2, 16 positions, learned prior (van den Oord et al. 2017)",
        model={"model": "vqvae"},
    ),
    "jointvae-exact": Entry(
        "JointVAE, 10 categories summed out exactly (TraceEnum_ELBO)",
        model={"model": "jointvae"},
        train={"elbo": "enum"},
    ),
    "jointvae-relaxed": Entry(
        "JointVAE, Gumbel-softmax τ = 0.67 (Dupont 2018)",
        model={"model": "jointvae", "discrete": "relaxed"},
    ),
}
# numbers a kind adds to its evaluation that the zoo keeps (JointVAE's)
EXTRA = (
    "summed_log_likelihood",
    "summed_log_likelihood_stderr",
    "cluster_accuracy",
    "bits_per_dim",
    "elbo_bits_per_dim",
)
SAMPLERS = ("gmm:10", "maf:4", "two-stage:256")


def score(
    run: runs.Run, grey: data.Dataset, n: int, seed: int, specs: Sequence[str] = SAMPLERS
) -> dict:
    """Reconstruction error, and FD / precision / recall of prior samples and of each ex-post
    sampler's (``specs``), against the test images of ``grey`` (the data as loaded: grey
    levels, whatever the run binarizes). ``ex_post`` is the sampler with the lowest FD."""
    features = quality.resolve("auto", grey, device=run.trainer.device)
    result = quality.score(run, features, n, seed=seed, dataset=grey)
    real, _ = quality.real_images(run, n, seed, dataset=grey)
    real = real.to(run.trainer.device)
    with torch.no_grad():
        recon = run.reconstruct(real)
        codes = run.encode(run.data.train)
        real_features = features(real)
        by_sampler = {}
        for spec in specs if isinstance(codes, torch.Tensor) else ():  # one array of codes
            sampler = samplers.fitted(spec, codes, seed=seed)
            gen = torch.Generator().manual_seed(seed)
            drawn = run.decode(sampler.sample(len(real), generator=gen)).to(real.device)
            by_sampler[spec] = quality.scores(real, drawn, features, real_features)
    best = min(by_sampler, key=lambda k: by_sampler[k]["fd"], default=None)
    ex_post = None if best is None else {"sampler": best, **by_sampler[best]}
    return {
        "metric": result["metric"],
        "n": result["n"],
        "prior": result["prior"],
        "ex_post": ex_post,
        "samplers": by_sampler,
        "reconstruction_mse": (recon - real).pow(2).flatten(1).sum(1).mean().item(),
        "feature_accuracy": result.get("feature_network", {}).get("test_accuracy"),
    }


def markdown(rows: Sequence[dict]) -> str:
    metric = rows[0]["quality"]["metric"] if rows else "FD"
    lines = [
        f"| model | test ELBO | test log p(x) | k | recon. MSE | {metric} prior | precision / "
        f"recall | {metric} best ex-post | precision / recall | s/epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        q, p, e = r["quality"], r["quality"]["prior"], r["quality"]["ex_post"]
        ll = r.get("log_likelihood")
        ex_post = (
            f"{e['fd']:.1f} ({e['sampler']}) | {e['precision']:.2f} / {e['recall']:.2f}"
            if e
            else "— | —"
        )
        lines.append(
            f"| {r['model']}: {r['what']} | {r['elbo']:.2f} | "
            + (f"{ll:.2f} ± {r['log_likelihood_stderr']:.2f}" if ll is not None else "—")
            + (f" ({r['bits_per_dim']:.3f} bits/dim)" if "bits_per_dim" in r else "")
            + f" | {r.get('importance_samples', 0)} | {q['reconstruction_mse']:.2f} | "
            f"{p['fd']:.1f} | {p['precision']:.2f} / {p['recall']:.2f} | {ex_post} | "
            f"{r['seconds_per_epoch']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--ll-samples", type=int, default=1000)
    p.add_argument("--quality-samples", type=int, default=1000)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="*", default=[500, 500])
    p.add_argument("--net", default="mlp", help="mlp, or conv (the convolutional nets)")
    p.add_argument("--likelihood", default="bernoulli", help="e.g. logistic256 for colour")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--samplers", nargs="*", default=list(SAMPLERS), help="ex-post samplers to score"
    )
    p.add_argument("--out", default="runs/zoo")
    args = p.parse_args(argv)

    out = Path(args.out)
    ds = data.load(args.dataset, args.data_dir)
    grey = ds.subset(args.train_size, args.test_size)
    base_model = ModelConfig(
        z_dim=args.z_dim, hidden=tuple(args.hidden), net=args.net, likelihood=args.likelihood
    )
    base_train = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        ll_samples=args.ll_samples,
        seed=args.seed,
        train_size=args.train_size,
        test_size=args.test_size,
        device=args.device,
    )
    slug = Path(args.dataset.split(":", 1)[-1]).name or "data"  # folder:../cifar10 -> cifar10
    rows: list[dict] = []
    for name in args.models:
        entry = ZOO[name]
        model_config = replace(base_model, **entry.model)
        train_config = replace(base_train, **entry.train)
        folder = out / f"{slug}-{name}-{args.epochs}ep"
        run, result = runs.train(model_config, train_config, folder, dataset=ds, progress=False)
        rows.append(
            {
                "model": name,
                "what": entry.what,
                "dataset": args.dataset,
                "binarization": run.binarize,
                "epochs": args.epochs,
                "n_test": result["n_data"],
                "elbo": result["elbo"],
                "log_likelihood": result.get("log_likelihood"),
                "log_likelihood_stderr": result.get("log_likelihood_stderr"),
                "importance_samples": result.get("importance_samples", 0),
                "seconds_per_epoch": result.get("seconds_per_epoch_median", float("nan")),
                "quality": score(run, grey, args.quality_samples, args.seed, args.samplers),
                **{k: result[k] for k in EXTRA if k in result},
            }
        )
        print(markdown(rows[-1:]), file=sys.stderr)
        write(out, rows)  # after every row: a long queue that stops keeps what it measured
    print(markdown(rows))
    return rows


def joint_markdown(rows: Sequence[dict]) -> str:
    """JointVAE's rows: log p(x) with the category sampled (the table's) and summed out."""
    joint = [r for r in rows if "summed_log_likelihood" in r]
    if not joint:
        return ""
    lines = [
        "| model | test ELBO | log p(x), c sampled | log p(x), c summed | cluster accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in joint:
        accuracy = r.get("cluster_accuracy", float("nan"))
        lines.append(
            f"| {r['model']} | {r['elbo']:.2f} | {r['log_likelihood']:.2f} ± "
            f"{r['log_likelihood_stderr']:.2f} | {r['summed_log_likelihood']:.2f} ± "
            f"{r['summed_log_likelihood_stderr']:.2f} | {accuracy:.3f} |"
        )
    return "\n".join(lines)


def write(out: Path, rows: Sequence[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo.json").write_text(json.dumps(list(rows), indent=2) + "\n")
    joint = joint_markdown(rows)
    (out / "zoo.md").write_text(markdown(rows) + "\n" + (f"\n{joint}\n" if joint else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
