"""Configuration files: ``pyro-vae train --config FILE`` and ``--print-config``.

A file holds two tables: ``[model]``, the fields of :class:`~pyro_vae.config.ModelConfig`,
and ``[train]``, those of :class:`~pyro_vae.config.TrainConfig` (data, training, evaluation).
A key is a field's name, as in the Python API (``z_dim``, ``num_particles``; the command line
writes them ``--z-dim``, ``--particles``). Only the options the command line has are accepted
(not ``x_dim``, ``image_shape``, ``num_classes``: those are set from the data); a key left out
takes its default, and so does a YAML ``null`` (TOML has no null: :func:`dumps` writes an unset
option as a comment). Lists (``hidden``, ``adam_betas``) are arrays. Relative paths
(``data_dir``, ``dataset = "folder:PATH"``) are relative to the working directory, as on the
command line. For example::

    [model]
    model = "vae"
    z_dim = 16
    hidden = [256, 256]

    [train]
    dataset = "mnist"
    epochs = 20
    lr = 0.0005

TOML is read by suffix ``.toml``; ``.yaml``/``.yml`` files (the same two mappings, ``model:``
and ``train:``) need PyYAML. The values are checked by the configs themselves, so the file,
the command line and the Python API refuse a bad value with the same line; a problem of the
file itself (missing, unreadable, a syntax error, an unknown section or key, a value of the
wrong type) is one line naming the file, the key and the fix.

:func:`dumps` writes every option (with its help as a comment above it) so that reading it
back gives equal configs (floats exactly: by ``repr``); :func:`write_run_config` writes a run
folder's ``config.toml``, from which ``pyro-vae train --config`` trains the same run again.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import textwrap
import types
import typing
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from .checkpoint import write_atomically
from .config import ModelConfig, TrainConfig, config_fields
from .registry import unknown

SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig}
FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}
RUN_CONFIG = "config.toml"  # the file in a run folder

_EXAMPLES: dict[type, Any] = {int: 100, float: 0.5, str: "NAME", bool: True}


# -- the fields a file may set ---------------------------------------------------------------


def cli_fields(cls: type) -> dict[str, tuple[Field, Any]]:
    """``{name: (field, type hint)}`` of the fields of ``cls`` the command line exposes."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in config_fields(cls) if f.metadata.get("cli", True)}


def _unwrap(hint: Any) -> Any:
    """``X`` for ``X | None``; else ``hint``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return hint


def format_of(path: str | os.PathLike) -> str:
    """``"toml"`` or ``"yaml"``, by the file's suffix; a one-line ValueError for another."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot read config file {path}: its suffix {suffix or '(none)'!r} is not one of "
            f"{', '.join(FORMATS)}; name it FILE.toml (or FILE.yaml, with PyYAML)"
        )
    return FORMATS[suffix]


# -- reading ----------------------------------------------------------------------------------


def read(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The options a config file sets: ``{"model": {...}, "train": {...}}``, each value of its
    field's type (lists as tuples, integers as floats where the field is a float); keys left
    out (or YAML ``null``) are absent. Each problem is one ValueError line naming the file."""
    fmt = format_of(path)
    raw = _parse(Path(path), fmt)
    if raw is None:  # an empty YAML file
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: the file must hold the tables [model] and [train], not "
            f"{_type_name(raw)}; see pyro-vae train --print-config for one"
        )
    sections = {name: cli_fields(cls) for name, cls in SECTIONS.items()}
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for section, table in raw.items():
        if section not in SECTIONS:
            raise ValueError(f"{path}: {_unknown_section(section, sections)}")
        if table is None:  # YAML "model:" with nothing under it
            continue
        if not isinstance(table, dict):
            raise ValueError(
                f"{path}: [{section}] must be a table of options (like z_dim = 50), not "
                f"{_type_name(table)}"
            )
        known = sections[section]
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"{path}: {_unknown_key(section, key, sections)}")
            if value is None:
                continue
            values[section][key] = _checked(value, known[key], section, key, path, fmt)
    return values


def configs_from_file(path: str | os.PathLike) -> tuple[ModelConfig, TrainConfig]:
    """The configs a file describes (its options over the defaults), checked by the configs
    themselves: a bad value is the same line as on the command line or in Python."""
    values = read(path)
    return ModelConfig(**values["model"]), TrainConfig(**values["train"])


def _parse(path: Path, fmt: str) -> Any:
    """The file's contents as Python values, or a one-line ValueError."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"no config file at {path}: check the path (pyro-vae train --print-config > "
            f"{path.name} writes one)"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a folder: pass the file in it") from None
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8"
        ) from None
    if fmt == "toml":
        toml = _toml_module(path)
        try:
            return toml.loads(decoded)
        except toml.TOMLDecodeError as e:
            problem = _first_line(e)
            fix = "fix that line" if "line" in problem else "fix the file"
            raise ValueError(f"{path} is not valid TOML: {problem}; {fix}") from None
    yaml = _yaml_module(path)
    try:
        return yaml.safe_load(decoded)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or _first_line(e)
        raise ValueError(f"{path} is not valid YAML: {problem}{where}; fix that line") from None


def _toml_module(path: Path) -> Any:
    try:
        return importlib.import_module("tomllib")  # Python 3.11+
    except ImportError:
        pass
    try:
        return importlib.import_module("tomli")
    except ImportError:
        raise ValueError(f"reading {path} on Python 3.10 needs tomli: pip install tomli") from None


def _yaml_module(path: Path) -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise ValueError(f"reading {path} needs PyYAML: pip install pyyaml") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _type_name(value: Any) -> str:
    """What ``value`` is, in words with an article ("a string")."""
    if isinstance(value, bool):
        return "true/false"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), f"a {type(value).__name__}")


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(what: str, name: Any, choices: Any, hint: str) -> str:
    """:func:`~pyro_vae.registry.unknown`'s line with ``hint`` after the name."""
    line = unknown(what, name, choices)
    head = f"unknown {what} {name!r}"
    return head + hint + line[len(head) :]


def _unknown_section(section: str, sections: dict[str, dict[str, Any]]) -> str:
    for home, known in sections.items():
        if section in known:
            return f"{section!r} is outside the tables: put it under [{home}]"
    return _unknown("section", section, SECTIONS, _suggest(str(section), list(SECTIONS)))


def _unknown_key(section: str, key: str, sections: dict[str, dict[str, Any]]) -> str:
    for other, known in sections.items():
        if other != section and key in known:
            return f"{key!r} belongs in [{other}], not [{section}]: move it there"
    cls = SECTIONS[section]
    if key in {f.name for f in fields(cls)}:  # type: ignore[arg-type]
        return f"[{section}] {key} is set from the data, not by a file: leave it out"
    known = sections[section]
    # the command line's spelling (--z-dim, --particles) points at the field's name
    aliases = {n.replace("_", "-"): n for n in known}
    aliases |= {
        f.metadata["flag"].lstrip("-"): n for n, (f, _) in known.items() if "flag" in f.metadata
    }
    spelled = str(key).lstrip("-")
    if spelled in aliases:
        hint = f" (did you mean {aliases[spelled]!r}?)"
    else:
        hint = _suggest(spelled.replace("-", "_"), list(known))
    return _unknown(f"[{section}] key", key, known, hint)


def _checked(
    value: Any, spec: tuple[Field, Any], section: str, key: str, path: Any, fmt: str
) -> Any:
    """``value`` as its field's type, or a one-line ValueError with an example of the right
    one."""
    f, hint = spec
    hint = _unwrap(hint)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item = args[0]
        size = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        if isinstance(value, list) and (size is None or len(value) == size):
            try:
                return tuple(_scalar(v, item, fmt) for v in value)
            except TypeError:
                pass
        what = "a list of " + (f"{size} " if size else "") + _plural(item)
    else:
        try:
            return _scalar(value, hint, fmt)
        except TypeError:
            what = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[
                hint
            ]
    example = f.default if f.default is not None else _example(hint)
    line = _assignment(key, example, fmt)
    raise ValueError(
        f"{path}: [{section}] {key} must be {what}, e.g. {line}; got {_shown(value, fmt)} "
        f"({_type_name(value)})"
    )


def _scalar(value: Any, hint: type, fmt: str) -> Any:
    """``value`` as ``hint`` (int, float, str or bool); TypeError when it is not one."""
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if fmt == "yaml" and isinstance(value, str):
            # PyYAML reads YAML 1.1, where 1e-3 (no dot, no exponent sign) is a string
            try:
                return float(value)
            except ValueError:
                pass
    if hint is str and isinstance(value, str):
        return value
    raise TypeError(value)


def _plural(hint: type) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "true/false"}[hint]


def _example(hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        return (_EXAMPLES[typing.get_args(hint)[0]],) * 2
    return _EXAMPLES[hint]


# -- writing ----------------------------------------------------------------------------------


def dumps(model_config: ModelConfig, train_config: TrainConfig, format: str = "toml") -> str:
    """Every command-line option of the two configs, as a ``format`` ("toml" or "yaml") file
    that :func:`read` turns back into equal configs; each option has its help as a comment
    above it, and an unset one (None) is a comment only."""
    if format not in ("toml", "yaml"):
        raise ValueError(unknown("config file format", format, ("toml", "yaml")))
    lines = [
        "# pyro-vae training configuration: pyro-vae train --config FILE",
        "# (options given on the command line override it; one left out takes its default)",
    ]
    for section, config in (("model", model_config), ("train", train_config)):
        lines += ["", f"[{section}]" if format == "toml" else f"{section}:"]
        indent = "" if format == "toml" else "  "
        for name, (f, _) in cli_fields(type(config)).items():
            value = getattr(config, name)
            if lines[-1] != f"[{section}]" and lines[-1] != f"{section}:":
                lines.append("")
            lines += [
                f"{indent}# {text}"
                for text in textwrap.wrap(f.metadata.get("help", ""), 96 - len(indent))
            ]
            if value is None:
                lines.append(f"{indent}# {name}: not set")
            else:
                lines.append(indent + _assignment(name, value, format))
    return "\n".join(lines) + "\n"


def write_run_config(out: str | os.PathLike, model_config: Any, train_config: Any) -> Path:
    """Write ``out/config.toml`` (atomically: a temporary file renamed over it), from which
    ``pyro-vae train --config out/config.toml --out NEW`` trains the same run again."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_CONFIG
    folder = " ".join(str(out).splitlines())  # one comment line, whatever the folder's name
    text = (
        f"# the configuration of the run in {folder}: pyro-vae train "
        f"--config {folder}/{RUN_CONFIG} --out NEW\n"
        "# trains it again, bit for bit on the same machine and versions\n"
        + dumps(model_config, train_config)
    )
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def _assignment(name: str, value: Any, fmt: str) -> str:
    return f"{name} = {_value(value, fmt)}" if fmt == "toml" else f"{name}: {_value(value, fmt)}"


def _value(value: Any, fmt: str) -> str:
    """``value`` written in TOML or YAML (flow style) syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value, fmt)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, fmt) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to a config file")


def _shown(value: Any, fmt: str) -> str:
    """``value`` as the file would spell it, for messages (Python's repr for other values)."""
    try:
        return _value(value, fmt)
    except TypeError:
        return repr(value)


def _float(x: float, fmt: str) -> str:
    """The shortest text that reads back as exactly ``x`` (``repr``), in the file's syntax."""
    if math.isnan(x):
        return "nan" if fmt == "toml" else ".nan"
    if math.isinf(x):
        sign = "-" if x < 0 else ""
        return f"{sign}inf" if fmt == "toml" else f"{sign}.inf"
    text = repr(x)
    if fmt == "yaml" and "." not in text:  # YAML 1.1 floats need a dot: 1e-05 -> 1.0e-05
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}.0" + (f"e{exponent}" if exponent else "")
    return text


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _string(s: str) -> str:
    """A double-quoted string, valid in both TOML and YAML."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


__all__ = ["configs_from_file", "dumps", "format_of", "read", "write_run_config"]
