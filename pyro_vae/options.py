"""Command-line options derived from the config dataclasses.

Each field of :class:`~pyro_vae.config.ModelConfig` and :class:`~pyro_vae.config.TrainConfig`
becomes an option (``--field-name``, or the field's ``flag``) with its type, default and help
from the field itself, so a new config field appears in ``pyro-vae train --help`` without
editing the CLI. Values are checked by the configs, so the CLI and the Python API refuse the
same values with the same message.

``--config FILE`` reads options from a TOML (or YAML) file (see :mod:`pyro_vae.configfile`):
the parser's defaults < the file < the options given on the command line. ``--print-config``
writes the configuration so resolved, in the file's format, instead of training
(:func:`print_config_if_asked`).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import MISSING, Field, asdict, fields
from typing import Any

from . import configfile
from .config import RESUMABLE, ModelConfig, TrainConfig, config_fields
from .registry import check_count

CONFIGS = (ModelConfig, TrainConfig)


class Count(argparse.Action):
    """A count option of a command or experiment (``--n``, ``--samples``, ``--steps``, ...):
    ``add_argument("--n", action=Count, least=1, most=100, ...)`` declares it, and a value
    below ``least`` or above ``most`` (any one of several, with ``nargs``) is refused as it is
    parsed, in the line the Python API gives for the same count
    (:func:`pyro_vae.registry.check_count`). ``most`` bounds the counts of a figure (images per
    side, rows), which past it would be unreadable and could exhaust memory."""

    def __init__(
        self,
        option_strings: list[str],
        dest: str,
        least: int = 1,
        most: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("type", int)
        super().__init__(option_strings, dest, **kwargs)
        self.least, self.most = least, most

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        for value in values if isinstance(values, list) else [values]:
            check_count(value, option_string, self.least, self.most)
        setattr(namespace, self.dest, values)


GROUPS = {"data": "data", "model": "model", None: "training"}
SECTIONS = {cls: section for section, cls in configfile.SECTIONS.items()}  # of a config file


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps a script's docstring as written and shows every option's default."""


GIVEN = "given_options"  # the namespace attribute naming the options on the command line


def _record(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, GIVEN, None) or set()
    setattr(namespace, GIVEN, given | {dest})


class _Store(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


class _Bool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


def mark_given(args: argparse.Namespace, *names: str) -> None:
    """Count options set in code (an experiment's ``--smoke`` values) as given on the command
    line: they then win over a ``--config`` file, as typed options do."""
    for name in names:
        _record(args, name)


def given_options(args: argparse.Namespace) -> set[str]:
    """The config fields whose options were on the command line (not defaults)."""
    return set(getattr(args, GIVEN, None) or ())


def _kwargs(f: Field, hint: Any) -> dict[str, Any]:
    """argparse keywords for one field from its type hint."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    kw: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", ""), "action": _Store}
    if typing.get_origin(hint) is tuple:
        kw["type"] = args[0]
        kw["nargs"] = "*" if len(args) == 2 and args[1] is Ellipsis else len(args)
    elif hint is bool:
        kw["action"] = _Bool
    else:
        kw["type"] = hint
    for key in ("metavar", "choices"):
        if key in f.metadata:
            kw[key] = f.metadata[key]
    return kw


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per command-line field of the configs, grouped (data, model, training)."""
    groups = {name: parser.add_argument_group(name) for name in ("data", "model", "training")}
    for cls in CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in config_fields(cls):
            if not f.metadata.get("cli", True):
                continue
            name = GROUPS[f.metadata.get("group")]
            group = groups[name]
            default = f.default if f.default is not MISSING else None
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            kw = _kwargs(f, hints[f.name])
            kw["default"] = list(default) if isinstance(default, tuple) else default
            group.add_argument(flag, **kw)


def configs_from_args(
    args: argparse.Namespace, base: tuple[ModelConfig, TrainConfig] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """The configs the parsed options describe (checked by the configs themselves): the
    parser's defaults, over them the values of ``--config FILE`` where given, over those the
    options given on the command line. With ``base`` (a resumed run's saved configs), those
    configs with only the file's values and the given options changed: the file counts as
    given options."""
    values = vars(args)
    given = given_options(args)
    path = values.get("config")
    from_file = configfile.read(path) if path else {s: {} for s in configfile.SECTIONS}

    def make(cls: type, start: Any) -> Any:
        kw = {} if start is None else asdict(start)
        file_values = from_file[SECTIONS[cls]]
        for f in fields(cls):
            if f.name in values and f.name in given:
                value = values[f.name]
            elif f.name in file_values:
                value = file_values[f.name]
            elif f.name in values and start is None:
                value = values[f.name]
            else:
                continue
            kw[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kw)

    model_base, train_base = base if base is not None else (None, None)
    return make(ModelConfig, model_base), make(TrainConfig, train_base)


def print_config_if_asked(
    args: argparse.Namespace, configs: tuple[ModelConfig, TrainConfig] | None = None
) -> bool:
    """With ``--print-config``: write the configuration (``configs``, else the one
    :func:`configs_from_args` resolves) to stdout, in the format of ``--config`` (TOML without
    one), and return True: the caller then stops. Without it: False, and nothing is done."""
    if not getattr(args, "print_config", False):
        return False
    model_config, train_config = configs if configs is not None else configs_from_args(args)
    path = getattr(args, "config", None)
    fmt = configfile.format_of(path) if path else "toml"
    sys.stdout.write(configfile.dumps(model_config, train_config, fmt))
    sys.stdout.flush()
    return True


def add_config_file_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--print-config``."""
    g = parser.add_argument_group("configuration file")
    g.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="read the options from this TOML file ([model] and [train] tables of the option "
        "names, e.g. z_dim = 16; .yaml/.yml with PyYAML); options on the command line override "
        "it; with --resume its values count as options given (a run folder's config.toml: "
        "pyro-vae train --config runs/X/config.toml --out runs/Y trains run X again)",
    )
    g.add_argument(
        "--print-config",
        action="store_true",
        help="write the full configuration (defaults, --config, the options given) to stdout "
        "in --config's format (else TOML) instead of training: --print-config > my.toml",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default runs/DATA-TIME)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its saved options (to its saved --epochs unless "
        f"given; only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} and where the "
        "data are (--dataset of the same kind) may change, logged in resume.log)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_arguments(parser: argparse.ArgumentParser, **defaults: object) -> None:
    """The options of a training run (``pyro-vae train`` and the experiment scripts)."""
    add_config_arguments(parser)
    add_config_file_arguments(parser)
    add_output_arguments(parser)
    parser.set_defaults(**defaults)
