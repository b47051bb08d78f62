"""Semi-supervised M2 (Kingma et al. 2014) on MNIST with few labels, against a classifier
trained on the labelled part alone.

    python -m experiments.semi_supervised --data-dir ../shared/data --epochs 25 --out runs/ssvae

For each label budget (``--budgets``, default 100 600 1000 3000 labelled training digits,
balanced over classes and chosen by the seed) and each seed (``--seeds``), trains
``--model m2`` with ``TraceEnum_ELBO`` (the class y of unlabelled digits summed out exactly)
and the auxiliary term ``--aux-weight`` * log q(y|x) on labelled digits, every other training
digit unlabelled, the labelled ones oversampled to about ``--labelled-per-epoch`` per epoch
(3000: as many as the largest budget sees once; 0 visits each once, as Pyro's example does,
which leaves 100 labels one supervised step per epoch); the network defaults to Pyro's SS-VAE
tutorial (z 50, one hidden layer of 500 softplus units, batch 200), alpha to 300 (the default
of Pyro's ss_vae_M2.py; the tutorial used 46) and the optimizer to that script's example run
(Adam, lr 1e-3, beta1 0.95). Its test accuracy (argmax of q(y|x) after the last epoch) is
reported as mean and standard deviation over seeds, with how often its class-conditional
samples are read as their label by its own q(y|x) (whether the decoder uses y), next to a
supervised-only classifier of the same network (``models.Classifier``, trained by maximum
likelihood through the same trainer on the labelled digits only, for ``--baseline-steps`` Adam
steps whatever the budget: to convergence, not for a number of passes) and the published
figures. Writes semi_supervised.json, .md, accuracy.png (accuracy against labels, and M2's
test accuracy after each epoch) and the class-conditional samples of the last run
(class_conditional.png). Each run has its own folder under ``--out``; ``--resume`` continues
or reuses them, so budgets trained by separate processes (``--budgets 100 1000`` and
``--budgets 600 3000``) make one table afterwards.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from pyro_vae import evaluate, experiment, plots, predictive
from pyro_vae.data import num_batches
from pyro_vae.models import Classifier, NoLatents
from pyro_vae.options import Count
from pyro_vae.train import Trainer

# test accuracy (%) with these many labels: Pyro's SS-VAE tutorial (enumeration + auxiliary
# loss) and Kingma et al. (2014), Table 1, M2 (100 - error rate)
PYRO_TUTORIAL = {100: 93.19, 600: 94.37, 1000: 94.87, 3000: 95.82}
KINGMA_M2 = {100: 100 - 11.97, 600: 100 - 4.94, 1000: 100 - 3.60, 3000: 100 - 3.92}
SETTINGS = {
    "model": "m2",
    "elbo": "enum",
    "z_dim": 50,
    "hidden": [500],
    "activation": "softplus",
    "batch_size": 200,
    "aux_weight": 300.0,
    "lr": 1e-3,
    "adam_betas": [0.95, 0.999],
}


def supervised_only(run, steps: int) -> float:  # type: ignore[no-untyped-def]
    """Test accuracy of ``models.Classifier`` trained on ``run``'s labelled digits only, for
    ``steps`` Adam steps (rounded up to whole passes)."""
    cfg, train = run.model_config, run.train_data
    device = run.trainer.device
    torch.manual_seed(run.train_config.seed)
    model = Classifier(cfg.x_dim, cfg.num_classes, cfg.hidden, cfg.activation).to(device)
    guide = NoLatents()
    config = replace(run.train_config, elbo="trace", num_particles=1, beta=1.0, warmup_epochs=0)
    trainer = Trainer(model, guide, config, device)
    labelled = (train.labelled_x, train.labelled_y)
    trainer.fit(
        labelled,
        math.ceil(steps / num_batches(labelled, config.batch_size)),
        dynamic=run.binarize == "dynamic",
        progress=False,
    )
    return evaluate.accuracy(model, run.data.test, run.data.test_labels)


def label_agreement(run, draws: int = 200) -> float:  # type: ignore[no-untyped-def]
    """Fraction of class-conditional draws E[x | z, y], z ~ p(z), that the run's own q(y|x)
    classifies as y: whether the decoder uses the label at all (about 0.1 if it ignores y)."""
    grid = predictive.class_conditional(run.model, run.model_config.num_classes, draws)
    return evaluate.accuracy(run.guide, grid["mean"], grid["y"])


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, **SETTINGS)
    p.add_argument("--budgets", action=Count, nargs="+", default=[100, 600, 1000, 3000])
    p.add_argument("--seeds", action=Count, least=0, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--baseline-steps",
        action=Count,
        default=5000,
        help="Adam steps of the supervised-only classifier (5000: converged for every budget)",
    )
    p.add_argument(
        "--labelled-per-epoch",
        action=Count,
        default=3000,
        help="oversample the labelled digits to about this many per epoch (0: each once, "
        "Pyro's schedule; overrides --labelled-repeats)",
    )
    args = experiment.parse(p, argv, budgets=[20, 50], seeds=[0, 1], baseline_steps=4)
    if args.checkpoint:
        raise ValueError("semi_supervised trains one run per budget and seed: drop --checkpoint")
    out = experiment.output_folder(args, "semi_supervised")
    rows = []
    for budget in args.budgets:
        m2, sup, curves, agreement = [], [], [], []
        for seed in args.seeds:
            args.labels, args.seed = budget, seed
            if args.labelled_per_epoch:
                args.labelled_repeats = max(1, round(args.labelled_per_epoch / budget))
            run = experiment.train_variant(args, out / f"m2-{budget}labels-seed{seed}")
            curves.append([row["test_accuracy"] for row in run.trainer.history])
            m2.append(curves[-1][-1])  # after the last epoch
            agreement.append(label_agreement(run))
            sup.append(supervised_only(run, args.baseline_steps))
        rows.append(
            {
                "labels": budget,
                "labelled_repeats": args.labelled_repeats,
                "seeds": list(args.seeds),
                "m2_accuracy": m2,
                "m2_mean": statistics.mean(m2),
                "m2_std": statistics.stdev(m2) if len(m2) > 1 else 0.0,
                "m2_accuracy_by_epoch": curves,
                "m2_label_agreement": agreement,
                "m2_label_agreement_mean": statistics.mean(agreement),
                "supervised_only_accuracy": sup,
                "supervised_only_mean": statistics.mean(sup),
                "supervised_only_std": statistics.stdev(sup) if len(sup) > 1 else 0.0,
                "pyro_tutorial": PYRO_TUTORIAL.get(budget),
                "kingma_m2": KINGMA_M2.get(budget),
            }
        )
        print(markdown(rows[-1:], args), flush=True)
        files = write_table(out, rows, args, run.binarize)  # after each budget: keeps what ran
    files.append(accuracy_figure(rows, out / "accuracy.png", args.epochs))
    grid = predictive.class_conditional(run.model, run.model_config.num_classes, 10)
    files.append(
        plots.save_grid(
            out / "class_conditional.png",
            grid["mean"],
            run.data.image_shape,
            ncol=10,
            title=f"M2, {args.budgets[-1]} labels: E[x|z,y], one row per class y, z ~ p(z)",
        )
    )
    experiment.done(out, files)
    return {"rows": rows}


def write_table(out: Path, rows: list[dict], args, binarize: str) -> list[Path]:  # type: ignore[no-untyped-def]
    numbers = {
        "settings": {
            "epochs": args.epochs,
            "binarization": binarize,
            "labelled_per_epoch": args.labelled_per_epoch,
            "baseline_steps": args.baseline_steps,
            **{key: getattr(args, key) for key in SETTINGS},
        },
        "rows": rows,
    }
    table = out / "semi_supervised.md"
    table.write_text(markdown(rows, args) + "\n")
    return [experiment.save_numbers(out, "semi_supervised", numbers), table]


def markdown(rows: Sequence[dict], args) -> str:  # type: ignore[no-untyped-def]
    pct = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"| labels | M2 test accuracy % ({args.epochs} epochs, {len(args.seeds)} seeds) "
        "| supervised-only % | Pyro tutorial % | Kingma et al. M2 % "
        "| M2 samples read as their y % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['labels']} | {100 * r['m2_mean']:.2f} ± {100 * r['m2_std']:.2f} "
            f"| {100 * r['supervised_only_mean']:.2f} ± {100 * r['supervised_only_std']:.2f} "
            f"| {pct(r['pyro_tutorial'])} | {pct(r['kingma_m2'])} "
            f"| {100 * r['m2_label_agreement_mean']:.1f} |"
        )
    return "\n".join(lines)


def accuracy_figure(rows: Sequence[dict], path: Path, epochs: int) -> Path:
    """Left: test accuracy against the label budget. Right: M2's test accuracy after each
    epoch (mean over seeds), the supervised-only classifier dashed in the same colour."""
    budgets = [r["labels"] for r in rows]
    fig, (ax, by_epoch) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (
        ("m2", f"M2 (ours, {epochs} epochs)"),
        ("supervised_only", "supervised only"),
    ):
        ax.errorbar(
            budgets,
            [100 * r[f"{key}_mean"] for r in rows],
            yerr=[100 * r[f"{key}_std"] for r in rows],
            marker="o",
            capsize=3,
            label=label,
        )
    for table, label, marker in (
        (PYRO_TUTORIAL, "Pyro tutorial", "s"),
        (KINGMA_M2, "Kingma et al. M2", "^"),
    ):
        known = [b for b in budgets if b in table]
        if known:
            ax.plot(known, [table[b] for b in known], marker, label=label, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled training digits")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("q(y|x) on the MNIST test set (mean ± sd over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(rows):
        colour = colours[i % len(colours)]
        mean = torch.tensor(r["m2_accuracy_by_epoch"]).mean(0) * 100
        epochs_run = range(1, len(mean) + 1)
        by_epoch.plot(epochs_run, mean, ".-", color=colour, label=f"{r['labels']} labels")
        by_epoch.axhline(100 * r["supervised_only_mean"], color=colour, linestyle="--", lw=1)
    by_epoch.set_xlabel("epoch")
    by_epoch.set_ylabel("M2 test accuracy (%)")
    by_epoch.set_title("M2 during training; dashed: supervised only", fontsize=9)
    by_epoch.legend(fontsize=8)
    for a in (ax, by_epoch):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return plots.save_figure(fig, path)


if __name__ == "__main__":
    main()
