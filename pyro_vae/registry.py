"""Registries: pieces by name, for configs, the CLI and checkpoints.

Each registry lives next to what it registers (priors in ``priors.py``, guides in
``guides/``, ...). A name is either a registered one (``"mog"``), a user's class or factory by
import path (``"mypkg.priors:MoG"``), or one that an installed package adds through the entry
point group ``pyro_vae.<registry>``. Whatever the name, a run records it in its checkpoint, so
``evaluate``/``sample`` in a new process rebuild the same piece (the user's module must be
importable there).
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one kind of piece, with one error for every unknown name.

    Args:
        what: the piece in words, for messages ("prior", "guide", ...).
        group: the entry point group packages extend it through (``pyro_vae.priors``).
    """

    def __init__(self, what: str, group: str | None = None) -> None:
        self.what, self.group = what, group
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._options: dict[str, type] = {}

    def register(
        self, name: str, item: T | None = None, help: str = "", options: type | None = None
    ) -> Any:
        """``registry.register("name", factory)``, or as a decorator
        ``@registry.register("name")``. ``options``: the dataclass of the options the piece
        brings (see :class:`Options`); the configs gain its fields."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            self._help[name] = help or _first_line(obj)
            if options is not None:
                self._options[name] = options
            return obj

        return add if item is None else add(item)

    def options(self) -> dict[type, list[str]]:
        """The option dataclasses of the registered pieces, each with the names that read it,
        in the order they were registered."""
        out: dict[type, list[str]] = {}
        for name, cls in self._options.items():
            out.setdefault(cls, []).append(name)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def choose(self, name: str) -> T:
        """The piece registered as ``name``, or imported from ``"module:attr"``, or from an
        installed entry point; else a one-line error naming the choices."""
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return _import(name, self.what)
        found = self._entry_point(name)
        if found is not None:
            return found
        raise ValueError(
            f"{unknown(self.what, name, self._items)}, or name your own as 'package.module:Class'"
        )

    def check(self, name: str) -> str:
        """``name`` if :meth:`choose` finds it (the error otherwise): for config validation."""
        self.choose(name)
        return name

    def _entry_point(self, name: str) -> T | None:
        if self.group is None:
            return None
        for ep in metadata.entry_points(group=self.group):
            if ep.name == name:
                return ep.load()
        return None


def option(default: Any, help: str, **meta: Any) -> Any:
    """A config field with its command-line help (``flag=``, ``cli=False``, ``choices=``,
    ``group=``, ``metavar=`` in the metadata)."""
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple default")
    return field(default=default, metadata={"help": help, **meta})


class Options:
    """Base of the small dataclasses in which a piece declares the options it brings, next to
    its class (``@dataclass class MixtureOptions(Options): prior_components: int =
    option(10, "...")``, registered with ``PRIORS.register("mog", ..., options=MixtureOptions)``).
    :class:`~pyro_vae.config.ModelConfig` and :class:`~pyro_vae.config.TrainConfig` are built
    from these declarations, so their command-line flags, config-file keys and checks come from
    here; ``validate`` refuses bad values in one line."""

    def validate(self) -> None:
        """Raise ValueError with one line naming the problem and the fix."""


def at_least_one(config: object, *names: str) -> None:
    """The one check of whole-number options that must be 1 or more."""
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be at least 1; got {getattr(config, name)}")


def non_negative(config: object, *names: str) -> None:
    """The one check of number options that must be finite and 0 or more."""
    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value}")


def check_count(n: Any, what: str, least: int = 1, most: int | None = None) -> int:
    """``n`` as an int if it is a whole number >= ``least`` (and <= ``most``), else one line
    naming ``what``: an argument of the Python API, or an option (:class:`~.options.Count`)."""
    whole = not isinstance(n, bool) and isinstance(n, numbers.Integral)
    if most is not None and not (whole and least <= n <= most):
        raise ValueError(f"{what} must be a whole number from {least} to {most}; got {n!r}")
    if not whole or n < least:
        raise ValueError(f"{what} must be a whole number >= {least}; got {n!r}")
    return int(n)


def unknown(what: str, name: str, choices: Iterable[str]) -> str:
    """The one message for a name that is not among ``choices``."""
    return f"unknown {what} {name!r}; choose one of {sorted(choices)}"


def one_of(name: str, choices: Iterable[str], what: str) -> str:
    """``name`` if it is one of ``choices``, else a ValueError with :func:`unknown`."""
    if name not in choices:
        raise ValueError(unknown(what, name, choices))
    return name


def _import(path: str, what: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"cannot import {what} {path!r} ({type(e).__name__}: {e}); the module must be "
            "importable here (on PYTHONPATH or installed), as 'package.module:Class'"
        ) from None
    if not callable(obj):
        raise ValueError(f"{what} {path!r} is not a class or function")
    return obj


def construct(factory: Callable[..., T], **available: Any) -> T:
    """Call ``factory`` with those of ``available`` its signature names: how a registered
    class, or a user's class or factory function named by import path, is built from the same
    values, e.g. ``construct(MixtureOfGaussians, z_dim=50, components=10, x_dim=784,
    guide=guide)``. A factory that needs anything else is refused in one line."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    missing = missing_arguments(factory, available)
    if missing:
        name = getattr(factory, "__qualname__", repr(factory))
        raise ValueError(
            f"{name} cannot be built from the standard arguments ({', '.join(available)}): it "
            f"also needs {', '.join(missing)}; give a class or factory function whose required "
            "parameters are among those"
        )
    return factory(**{k: v for k, v in available.items() if k in params})


def missing_arguments(factory: Callable[..., Any], available: Iterable[str]) -> list[str]:
    """The required parameters of ``factory`` that are not among ``available``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = set(available)
    return [
        p.name for p in params if p.default is p.empty and p.kind in kinds and p.name not in names
    ]


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
