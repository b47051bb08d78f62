"""Command line: ``pyro-vae train | evaluate | sample`` (also ``python -m pyro_vae``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from . import checkpoint, data, evaluate
from . import run as runs
from .config import GUIDES, MODELS, NETS, ModelConfig, TrainConfig
from .likelihoods import LIKELIHOODS
from .nets import ACTIVATIONS
from .priors import PRIORS
from .runtime import DeviceError
from .train import ELBOS

# errors that describe a problem with the user's input and say how to fix it
USER_ERRORS = (
    ValueError,
    data.DataError,
    checkpoint.CheckpointError,
    DeviceError,
    FileExistsError,
    FloatingPointError,
)


def add_train_arguments(parser: argparse.ArgumentParser, **defaults: object) -> None:
    """The options of a training run (shared by ``pyro-vae train`` and experiment scripts)."""
    m, t = ModelConfig(), TrainConfig()
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=t.dataset, choices=sorted(data.DATASETS))
    g.add_argument(
        "--data-dir",
        default=None,
        help=f"folder with the data files (else ${data.ENV_VAR}, then downloads)",
    )
    g.add_argument(
        "--binarize",
        default=t.binarize,
        choices=["auto", *data.BINARIZATIONS],
        help="auto: dynamic for bernoulli, none for grey-level likelihoods",
    )
    g.add_argument("--train-size", type=int, default=None, help="use the first N training data")
    g.add_argument("--test-size", type=int, default=None, help="use the first N test data")
    g.add_argument(
        "--labels",
        type=int,
        default=None,
        help="--model m2: labelled training data, balanced over classes, chosen with --seed",
    )
    g.add_argument(
        "--labelled-repeats",
        type=int,
        default=t.labelled_repeats,
        help="--model m2: passes over the labelled data per epoch (1: Pyro's schedule)",
    )
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=m.model,
        choices=list(MODELS),
        help="vae; cvae: conditional VAE (labels given); m2: semi-supervised (--labels N)",
    )
    g.add_argument(
        "--aux-weight",
        type=float,
        default=m.aux_weight,
        help="m2: weight of the classifier term alpha * log q(y|x) on labelled data",
    )
    g.add_argument("--z-dim", type=int, default=m.z_dim)
    g.add_argument("--hidden", type=int, nargs="*", default=list(m.hidden), help="MLP widths")
    g.add_argument("--activation", default=m.activation, choices=sorted(ACTIVATIONS))
    g.add_argument(
        "--net",
        default=m.net,
        choices=list(NETS),
        help="mlp, or conv (convolutional; --hidden's first width sizes its dense layer)",
    )
    g.add_argument("--prior", default=m.prior, choices=sorted(PRIORS))
    g.add_argument(
        "--prior-components",
        type=int,
        default=m.prior_components,
        help="mixture components (mog) or pseudo-inputs (vampprior)",
    )
    g.add_argument("--likelihood", default=m.likelihood, choices=sorted(LIKELIHOODS))
    g.add_argument("--guide", default=m.guide, choices=sorted(GUIDES))
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=t.epochs)
    g.add_argument("--batch-size", type=int, default=t.batch_size)
    g.add_argument("--lr", type=float, default=t.lr)
    g.add_argument(
        "--adam-betas",
        type=float,
        nargs=2,
        default=list(t.adam_betas),
        metavar=("BETA1", "BETA2"),
        help="Adam's decay rates of the gradient's moments (Pyro's ss_vae_M2 example: 0.95 0.999)",
    )
    g.add_argument("--elbo", default=t.elbo, choices=sorted(ELBOS))
    g.add_argument("--particles", dest="num_particles", type=int, default=t.num_particles)
    g.add_argument("--beta", type=float, default=t.beta, help="KL weight (β-VAE); 1 = ELBO")
    g.add_argument(
        "--warmup-epochs",
        type=int,
        default=t.warmup_epochs,
        help="ramp the KL weight from 0 to --beta over these epochs",
    )
    g.add_argument("--seed", type=int, default=t.seed)
    g.add_argument("--device", default=t.device, help="auto (CUDA if present), cpu, cuda[:N]")
    g.add_argument(
        "--ll-samples",
        type=int,
        default=t.ll_samples,
        help="importance samples for the final test log p(x) (0 skips it)",
    )
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default runs/DATASET-TIME)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(**defaults)


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    values = vars(args)
    model_config = ModelConfig(
        z_dim=args.z_dim,
        hidden=tuple(args.hidden),
        activation=args.activation,
        prior=args.prior,
        likelihood=args.likelihood,
        guide=args.guide,
        prior_components=args.prior_components,
        net=args.net,
        model=args.model,
        aux_weight=args.aux_weight,
    )
    train_config = TrainConfig(**{f.name: values[f.name] for f in fields(TrainConfig)})
    return model_config, train_config


def train_from_args(args: argparse.Namespace) -> dict:
    model_config, train_config = configs_from_args(args)
    out = args.out or f"runs/{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    _, result = runs.train(
        model_config,
        train_config,
        out,
        resume=args.resume,
        progress=False if args.no_progress else None,
    )
    return result


def cmd_evaluate(args: argparse.Namespace) -> None:
    run = runs.load(args.checkpoint, device=args.device)
    n = args.test_size
    test = tuple(t[:n] for t in evaluate.as_args(run.test_data))
    result = evaluate.summary(run.model, run.guide, test, args.samples)
    if hasattr(run.guide, "classify"):
        result["accuracy"] = evaluate.accuracy(run.guide, test[0], run.data.test_labels[:n])
    result |= runs.describe(run)
    print(runs.format_summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def cmd_sample(args: argparse.Namespace) -> None:
    run = runs.load(args.checkpoint, device=args.device, dataset=False)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "prior_samples.png"
    runs.write_samples(run, out)
    print(out)


def experiment_names() -> list[str]:
    """The scripts in the ``experiments`` package (installed with pyro-vae)."""
    import pkgutil

    import experiments

    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))


def cmd_run(args: argparse.Namespace) -> None:
    import importlib

    names = experiment_names()
    if args.name not in names:
        raise ValueError(f"unknown experiment {args.name!r}; choose one of {names}")
    importlib.import_module(f"experiments.{args.name}").main(args.args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyro-vae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a VAE with SVI and write its output folder")
    add_train_arguments(t)
    t.set_defaults(func=train_from_args)
    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled log p(x) of a run")
    e.add_argument("checkpoint")
    e.add_argument("--samples", type=int, default=5000, help="importance samples per datum")
    e.add_argument("--test-size", type=int, default=None)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", default=None, help="also write the numbers to this file")
    e.set_defaults(func=cmd_evaluate)
    s = sub.add_parser("sample", help="decode draws from the prior into a PNG grid")
    s.add_argument("checkpoint")
    s.add_argument("--out", default=None, help="PNG path (default: next to the checkpoint)")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_sample)
    r = sub.add_parser(
        "run", help="run an experiment script: pyro-vae run NAME [its options]", add_help=False
    )
    r.add_argument("name", help="experiment name (python -m experiments.NAME --help)")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        # one line: Pyro appends a table of trace shapes to errors raised inside a model
        print(f"pyro-vae: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
