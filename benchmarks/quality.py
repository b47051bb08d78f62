"""Test log-likelihoods of the standard configurations, next to the published figures.

    python benchmarks/quality.py --data-dir ../shared/data --epochs 10

For each data set and configuration this trains a run through ``pyro_vae.run.train`` (its
folder lands under ``--out``), then reports the test -ELBO and the importance-sampled test
-log p(x) (k = ``--ll-samples``, 5000 by default) in nats per datum. With ``--baseline`` a
hand-written PyTorch VAE of the same architecture is trained on the same data for the same
epochs and scored by the same estimator. Writes ``results.json`` and ``results.md``.

Published figures (converged training, thousands of epochs; ours use the budget shown):

- dynamic binarization, Burda et al. (2015), one stochastic layer: VAE 86.76,
  IWAE k=5 85.54, IWAE k=50 84.78;
- fixed binarization (Larochelle's files): IWAE k=1/5/50 88.71 / 87.63 / 87.10 and
  VampPrior 85.57 (Tomczak & Welling 2018), as listed in this project's benchmark spec.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from handwritten import HandWrittenVAE

from pyro_vae import data, evaluate
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build


@dataclass(frozen=True)
class Variant:
    """One row: an objective and the model pieces that differ from the VAE's."""

    elbo: str = "trace"
    particles: int = 1
    model: dict = field(default_factory=dict)  # ModelConfig overrides


CONFIGS: dict[str, Variant] = {
    "vae": Variant(),
    "iwae5": Variant("iwae", 5),
    "iwae50": Variant("iwae", 50),
    "vampprior": Variant(model={"prior": "vampprior", "prior_components": 500}),
    "mog": Variant(model={"prior": "mog", "prior_components": 10}),
    "fullcov": Variant(model={"guide": "fullcov"}),
    "iaf": Variant(model={"guide": "iaf"}),
}
# (data set, configuration) -> published test -log p(x) in nats
PUBLISHED: dict[tuple[str, str], float] = {
    ("mnist", "vae"): 86.76,
    ("mnist", "iwae5"): 85.54,
    ("mnist", "iwae50"): 84.78,
    ("binarized-mnist", "vae"): 88.71,
    ("binarized-mnist", "iwae5"): 87.63,
    ("binarized-mnist", "iwae50"): 87.10,
    ("binarized-mnist", "vampprior"): 85.57,
}
BINARIZATION = {"mnist": "dynamic", "binarized-mnist": "fixed (Larochelle)"}


def train_baseline(run: runs.Run, epochs: int) -> tuple[dict, float]:
    """Train the hand-written VAE on the run's data; score it with the project's estimators."""
    cfg, tc = run.model_config, run.train_config
    device = run.trainer.device
    torch.manual_seed(tc.seed)
    vae = HandWrittenVAE(cfg.x_dim, cfg.z_dim, cfg.hidden, cfg.activation).to(device)
    opt = vae.optimizer(tc.lr)
    start = time.perf_counter()
    for _ in range(epochs):
        vae.train_epoch(opt, run.data.train, tc.batch_size, dynamic=run.binarize == "dynamic")
    seconds = (time.perf_counter() - start) / max(epochs, 1)
    model, guide = build(cfg)
    vae.copy_into(model, guide)
    model.to(device)
    guide.to(device)
    return evaluate.summary(model, guide, run.data.test, tc.ll_samples), seconds


def row(dataset: str, name: str, result: dict, epochs: int, seconds: float) -> dict:
    return {
        "dataset": dataset,
        "binarization": BINARIZATION.get(dataset, result.get("binarization", "")),
        "config": name,
        "epochs": epochs,
        "n_test": result["n_data"],
        "neg_elbo": -result["elbo"],
        "neg_log_likelihood": -result.get("log_likelihood", float("nan")),
        "stderr": result.get("log_likelihood_stderr", float("nan")),
        "importance_samples": result.get("importance_samples", 0),
        "seconds_per_epoch": seconds,
        "published": PUBLISHED.get((dataset, name)),
    }


def markdown(rows: Sequence[dict]) -> str:
    lines = [
        "| data | binarization | model | epochs | test -ELBO | test -log p(x) | k | s/epoch "
        "| published -log p(x) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        published = f"{r['published']:.2f}" if r["published"] else "—"
        lines.append(
            f"| {r['dataset']} ({r['n_test']} test) | {r['binarization']} | {r['config']} "
            f"| {r['epochs']} | {r['neg_elbo']:.2f} | {r['neg_log_likelihood']:.2f} ± "
            f"{r['stderr']:.2f} | {r['importance_samples']} | {r['seconds_per_epoch']:.1f} "
            f"| {published} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--datasets", nargs="+", default=["mnist", "binarized-mnist"])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=sorted(CONFIGS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ll-samples", type=int, default=5000)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="*", default=[500, 500])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train and score the hand-written PyTorch VAE",
    )
    p.add_argument("--out", default="runs/quality")
    args = p.parse_args(argv)

    out = Path(args.out)
    base_config = ModelConfig(z_dim=args.z_dim, hidden=tuple(args.hidden))
    rows: list[dict] = []
    for dataset in args.datasets:
        ds = data.load(dataset, args.data_dir)
        for name in args.configs:
            variant = CONFIGS[name]
            model_config = replace(base_config, **variant.model)
            train_config = TrainConfig(
                dataset=dataset,
                data_dir=args.data_dir,
                epochs=args.epochs,
                elbo=variant.elbo,
                num_particles=variant.particles,
                ll_samples=args.ll_samples,
                seed=args.seed,
                train_size=args.train_size,
                test_size=args.test_size,
                device=args.device,
            )
            folder = out / f"{dataset}-{name}-{args.epochs}ep"
            run, result = runs.train(model_config, train_config, folder, dataset=ds, progress=False)
            seconds = result.get("seconds_per_epoch_median", float("nan"))
            rows.append(row(dataset, name, result, args.epochs, seconds))
            if args.baseline and name == "vae":
                base, seconds = train_baseline(run, args.epochs)
                rows.append(
                    row(
                        dataset,
                        "hand-written VAE",
                        base | {"binarization": run.binarize},
                        args.epochs,
                        seconds,
                    )
                )
            print(
                markdown(rows[-2:] if args.baseline and name == "vae" else rows[-1:]),
                file=sys.stderr,
            )
            write(out, rows)  # after every row: a long queue that stops keeps what it measured
    print(markdown(rows))
    return rows


def write(out: Path, rows: Sequence[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(list(rows), indent=2) + "\n")
    (out / "results.md").write_text(markdown(rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
