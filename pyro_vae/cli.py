"""Command line: ``pyro-vae train | evaluate | features | encode | decode | reconstruct |
interpolate | sample | export | run`` (also ``python -m pyro_vae``)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from . import (
    __version__,
    checkpoint,
    cli_apply,
    data,
    distributed,
    evaluate,
    experiment,
    quality,
    runtime,
)
from . import run as runs
from .config import ModelConfig, TrainConfig, from_dict
from .options import (
    Count,
    HelpFormatter,
    add_train_arguments,
    configs_from_args,
    print_config_if_asked,
)
from .quality import features
from .registry import unknown
from .runfolder import format_summary, load_checkpoint, write_json
from .runtime import DeviceError

# errors that describe a problem with the user's input and say how to fix it
USER_ERRORS = (
    ValueError,
    data.DataError,
    checkpoint.CheckpointError,
    DeviceError,
    FileExistsError,
    FloatingPointError,
    OSError,  # a read-only folder, a full disk: the system's one line names the path
    distributed.RankError,  # another process of a torchrun run died or hung
)
EXPERIMENTS_VAR = "PYRO_VAE_EXPERIMENTS"


def train_from_args(args: argparse.Namespace) -> dict:
    if args.resume:
        if not args.out:
            raise ValueError("--resume continues the run in --out: pass --out FOLDER")
        saved = load_checkpoint(Path(args.out) / "checkpoint.pt")
        base = (
            from_dict(ModelConfig, saved["model_config"]),
            from_dict(TrainConfig, saved["train_config"]),
        )
        model_config, train_config = configs_from_args(args, base)
    else:
        model_config, train_config = configs_from_args(args)
    if print_config_if_asked(args, (model_config, train_config)):
        return {}
    name = data.short_name(train_config.dataset)
    out = args.out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    _, result = runs.train(
        model_config,
        train_config,
        out,
        resume=args.resume,
        progress=False if args.no_progress else None,
    )
    return result


def _test_data(run: runs.Run, n: int | None) -> evaluate.Data:
    if run.test_data is None:
        raise ValueError(
            f"the data of this run ({run.data.name}) were not found: pass --data-dir, or set "
            f"${data.ENV_VAR}, to where they are"
        )
    return tuple(t[:n] for t in evaluate.as_args(run.test_data))


def _load(args: argparse.Namespace, dataset: bool | None = None) -> runs.Run:
    return runs.load(
        args.checkpoint,
        device=args.device,
        dataset=dataset,
        data_dir=getattr(args, "data_dir", None),
        spec=getattr(args, "dataset", None),
        other_data=getattr(args, "other_data", False),
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        cli_apply.check_output(json_path, "--json")
    run = _load(args, dataset=True)
    result = runs.evaluation(run, _test_data(run, args.test_size), args.samples)
    if args.quality:
        result["quality"] = quality.score(run, args.features, args.quality_samples)
    line = format_summary(result, run.kind)
    if args.samples == 0 and "log_likelihood_skipped" not in result:
        line += " (no log p(x): --samples 0)"
    print(line)
    if args.quality:
        print(quality.summary(result["quality"]))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, result)


def cmd_features(args: argparse.Namespace) -> None:
    dataset = data.load(args.dataset, args.data_dir, args.image_size)
    device = runtime.resolve_device(args.device)
    _, info, path = features.trained(
        dataset, args.epochs, args.seed, device=device, retrain=args.retrain
    )
    print(
        f"feature network of {data.short_name(dataset.name)} ({info['task']}): test accuracy "
        f"{info['test_accuracy']:.4f} (majority {info['majority_accuracy']:.4f}); {path}"
    )


def experiments_folder() -> Path | None:
    """Where the experiment scripts are: ``$PYRO_VAE_EXPERIMENTS``, else the ``experiments/``
    folder of this source checkout, else ``./experiments``."""
    for folder in (
        os.environ.get(EXPERIMENTS_VAR),
        Path(__file__).resolve().parents[1] / "experiments",
        Path.cwd() / "experiments",
    ):
        if folder and Path(folder).is_dir():
            return Path(folder)
    return None


def experiment_names() -> list[str]:
    folder = experiments_folder()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def load_experiment(name: str) -> ModuleType:
    names = experiment_names()
    if name not in names:
        where = experiments_folder() or f"(no experiments folder; set ${EXPERIMENTS_VAR})"
        raise ValueError(f"{unknown('experiment', name, names)} (in {where})")
    path = experiments_folder() / f"{name}.py"  # type: ignore[operator]
    spec = importlib.util.spec_from_file_location(f"pyro_vae_experiments.{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def experiments_help() -> str:
    lines = ["experiments (pyro-vae run NAME --help for each one's options):"]
    for name in experiment_names():
        doc = (load_experiment(name).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:22s} {doc[0] if doc else ''}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> None:
    if args.name is None:
        print(experiments_help())
        return
    try:
        load_experiment(args.name).main(args.args)
    finally:
        experiment.let_go_all()


class _ListExperiments(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="list the experiments")

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(parser.format_usage().rstrip())
        print(experiments_help())
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyro-vae", description=__doc__)
    p.add_argument("--version", action="version", version=f"pyro-vae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": HelpFormatter}
    t = sub.add_parser("train", help="train a model with SVI and write its output folder", **fmt)
    add_train_arguments(t)
    t.set_defaults(func=train_from_args)

    def with_checkpoint(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, **fmt)
        s.add_argument("checkpoint", help="a run's checkpoint.pt")
        s.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
        return s

    def where_data(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--dataset",
            default=None,
            metavar="SPEC",
            help="where the run's data are now, if they moved (folder:PATH, array:PATH, ...); "
            "their fingerprint must match the run's",
        )
        s.add_argument(
            "--data-dir",
            default=None,
            help="folder holding the run's data now (a moved folder: by its name in it)",
        )

    e = with_checkpoint("evaluate", "test ELBO and importance-sampled log p(x) of a run")
    e.add_argument(
        "--samples",
        action=Count,
        least=0,
        default=5000,
        help="importance samples per datum (0: none)",
    )
    e.add_argument("--test-size", action=Count, default=None, help="the first N test data only")
    where_data(e)
    e.add_argument(
        "--other-data",
        action="store_true",
        help="score the test split of another data set of the run's shape (--dataset SPEC) on "
        "purpose: no fingerprint check; the output and JSON say so",
    )
    e.add_argument(
        "--quality",
        action="store_true",
        help="also score sample quality: Fréchet distance, precision/recall and sharpness of "
        "prior samples and reconstructions (see --features)",
    )
    e.add_argument(
        "--features",
        default="auto",
        metavar="SPEC",
        help="features of --quality: auto (a classifier of the run's data, trained once and "
        "cached: pyro-vae features), auto:SEED (the same from another seed), inception:PATH "
        "(pytorch-fid's weights: FID), or a TorchScript file mapping images (n, C, H, W) in "
        "[0, 1] to features",
    )
    e.add_argument(
        "--quality-samples",
        action=Count,
        least=quality.K + 1,
        most=quality.MAX_N,
        default=quality.DEFAULT_N,
        help="generated and real images per --quality score (compare scores at equal N)",
    )
    e.add_argument("--json", default=None, help="also write the numbers to this file")
    e.set_defaults(func=cmd_evaluate)
    f = sub.add_parser(
        "features",
        help="train (once) and cache the feature network of a data set for --quality",
        **fmt,
    )
    f.add_argument("--dataset", default="mnist", metavar="SPEC", help="data set, as for train")
    f.add_argument("--data-dir", default=None, help="folder holding the data sets")
    f.add_argument("--image-size", action=Count, default=None, help="images S x S, as for train")
    f.add_argument(
        "--epochs",
        action=Count,
        most=1000,
        default=features.EPOCHS,
        help="training epochs (a cached network of other epochs is trained again)",
    )
    f.add_argument("--retrain", action="store_true", help="train again even if cached")
    f.add_argument(
        "--seed",
        action=Count,
        least=0,
        default=0,
        help="seed of the network (--features auto:SEED uses the one of seed SEED)",
    )
    f.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    f.set_defaults(func=cmd_features)
    cli_apply.add_commands(with_checkpoint, where_data, _load)
    r = sub.add_parser(
        "run", help="run an experiment script: pyro-vae run NAME [its options]", add_help=False
    )
    r.add_argument("-h", "--help", action=_ListExperiments)
    r.add_argument("name", nargs="?", default=None, help="experiment name")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    return p


class Terminated(Exception):
    """SIGTERM: a batch scheduler ending the job, or torchrun ending a run one of whose
    processes failed."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    # user modules named by import path (--prior mypkg.parts:X) are found in the current
    # folder, as with python -m pyro_vae (the installed script's sys.path lacks it)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        args = parser().parse_args(argv)
    except ValueError as e:  # a count option (options.Count) below its least value
        print(f"pyro-vae: error: {e}", file=sys.stderr)
        return 1
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGTERM, _terminate)
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, runtime.on_interrupt)
    try:
        rc = _run(args)
    finally:
        if main_thread and previous is not None:  # None: set from C, cannot be put back
            signal.signal(signal.SIGINT, previous)
    if distributed.world().size > 1:
        distributed.leave(rc == 0, rc)  # never returns: see there
    return rc


def _run(args: argparse.Namespace) -> int:
    try:
        args.func(args)
    except USER_ERRORS as e:
        # one line: Pyro appends a table of trace shapes to errors raised inside a model
        kept = _kept(args) if isinstance(e, distributed.RankError) else ""
        print(f"pyro-vae: error: {str(e).splitlines()[0]}{kept}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        runtime.clear_interrupt()
        print(f"pyro-vae: interrupted{_kept(args)}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"pyro-vae: terminated (SIGTERM){_kept(args)}", file=sys.stderr)
        return 143
    return 0


def _kept(args: argparse.Namespace) -> str:
    """What an interrupted command leaves: a training run keeps its last finished epoch."""
    if args.command != "train" or not args.out:
        return ""
    path = Path(args.out) / "checkpoint.pt"
    try:
        epoch = load_checkpoint(path)["trainer"]["epoch"]
    except checkpoint.CheckpointError:
        return f"; no epoch finished, so {args.out} holds no checkpoint"
    return (
        f"; {path} holds epoch {epoch}, the last finished one: continue with "
        f"pyro-vae train --resume --out {args.out}"
    )
