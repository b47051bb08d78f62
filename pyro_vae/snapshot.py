"""What a traced graph is keyed on: a snapshot of the Python state a forward pass may read.

A graph of :mod:`pyro_vae.traced` bakes in every Python value read while tracing: a
likelihood's ``self.T``, a flag in a list, β in the ELBO object, a number in a closure. Its key
therefore holds a snapshot (:func:`fingerprint`) of the Python state reachable from the ELBO
module (and the handlers), taken before a call whenever Python may have run since (each call;
in the trainer, after its hooks and each eager run): a hook that changes any of it makes the
next step trace (and check) a new graph. :func:`changed` names the first difference.
"""

from __future__ import annotations

import enum
import functools
import types
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

# A graph bakes in every Python value read while tracing: a likelihood's `self.T`, a flag in a
# list, β in the ELBO object, a number in a closure. The key therefore holds a snapshot of the
# Python state reachable from the ELBO module (and the handlers), taken before a call whenever
# Python may have run since (each call; in the trainer, after its hooks and each eager run): a
# hook that changes any of it makes the next step trace (and check) a new graph.

FINGERPRINT_VALUES = 1000  # values looked at per snapshot; beyond them, only identities
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device})
# nn.Module's and PyroModule's own bookkeeping that a forward pass does not read (the hooks it
# runs are looked at); training, parameters, buffers and children are taken apart by hand
_MODULE_SKIP = frozenset(
    {
        "training",
        "_parameters",
        "_buffers",
        "_modules",
        "_non_persistent_buffers_set",
        "_is_full_backward_hook",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
        "_pyro_context",  # Pyro's per-call cache and counters
        "_pyro_name",
    }
)


@functools.lru_cache(maxsize=1024)
def _module_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The attributes of a module (given all its ``__dict__``'s names) to look at."""
    return tuple(n for n in names if n not in _MODULE_SKIP)


def fingerprint(obj: Any, budget: int = FINGERPRINT_VALUES) -> Any:
    """A hashable snapshot of the Python state reachable from ``obj`` that a traced graph may
    have baked in; equal snapshots mean equal state as far as it was looked at.

    Modules give their train/eval mode, children, the identity of each parameter and buffer
    (their values are the graph's inputs) and their plain attributes; lists, tuples, dicts and
    sets give their items, NumPy arrays their bytes; plain objects (the ELBO, a user's prior)
    their ``__dict__`` or slots, and ``trace_key()`` where they define one; functions their
    code, defaults and closure; other tensors their identity and version (a value read with
    ``float(t)`` while tracing is a constant of the graph). Not seen: globals and class
    attributes, objects of C types (their identity only), and containers past the first
    ``budget`` values (identities only): :meth:`TracedLoss.recheck` covers those."""
    return _Fingerprint(budget).value(obj)


def handler_key(handler: Any) -> Any:
    # a handler's trace_key() is all that a graph depends on (a new ScaleLatents per step
    # with the same β keeps its graph); others are looked into like any object
    key = getattr(handler, "trace_key", None)
    return (type(handler), key()) if callable(key) else fingerprint(handler)


class _Fingerprint:
    """One snapshot (:func:`fingerprint`): a budget of values, and the containers seen."""

    __slots__ = ("left", "seen")

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.seen: set[int] = set()  # shared or cyclic references are taken once

    def value(self, v: Any) -> Any:
        t = type(v)
        if t in _ATOMS:
            return v
        self.left -= 1
        if self.left < 0:
            return ("unseen", t, id(v))
        if isinstance(v, Tensor):
            if isinstance(v, FakeTensor):  # kept by a forward while tracing: never read back
                return "fake"
            return id(v) if v.requires_grad else (id(v), v._version)
        if isinstance(v, int | float | complex | str | bytes):  # numpy's scalars, IntEnum...
            return (t, v)
        if hasattr(v, "__array_interface__"):  # a NumPy array: its bytes, if few
            self.left -= v.nbytes // 8
            return ("unseen", t, id(v)) if self.left < 0 else (t, v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, type | enum.Enum | types.BuiltinFunctionType | types.ModuleType):
            return v
        if id(v) in self.seen:
            return ("seen", id(v))
        self.seen.add(id(v))
        if isinstance(v, nn.Module):
            return self.module(v)
        if isinstance(v, list | tuple | dict | set | frozenset):
            self.left -= len(v)  # numbers in them too: a long table is not looked into
            if self.left < 0:
                return ("unseen", t, id(v))
            if isinstance(v, dict):
                return (t, tuple([(k, self.value(x)) for k, x in v.items()]))
            if isinstance(v, set | frozenset):
                return (t, frozenset([self.value(x) for x in v]))
            return (t, tuple([self.value(x) for x in v]))
        if isinstance(v, types.FunctionType):
            cells = tuple([self.value(_cell(c)) for c in v.__closure__ or ()])
            return (
                t,
                id(v.__code__),
                self.value(v.__defaults__),
                self.value(v.__kwdefaults__),
                cells,
            )
        if isinstance(v, types.MethodType):
            return (t, self.value(v.__func__), self.value(v.__self__))
        if isinstance(v, functools.partial):
            return (t, self.value(v.func), self.value(v.args), self.value(v.keywords))
        key = getattr(v, "trace_key", None)
        declared = key() if callable(key) and not isinstance(v, type) else None
        state = getattr(v, "__dict__", None)
        if isinstance(state, dict):
            return (t, tuple([(k, self.value(x)) for k, x in state.items()]), declared)
        slots = [s for c in t.__mro__ for s in _slot_names(c)]
        if slots:
            return (t, tuple([(s, self.value(getattr(v, s, None))) for s in slots]), declared)
        return ("unseen", t, id(v))

    def module(self, m: nn.Module) -> tuple:
        d = m.__dict__
        state: list[Any] = [
            type(m),
            ("training", d["training"]),
            ("parameters", tuple(map(id, d["_parameters"].values()))),
            ("buffers", tuple(map(id, d["_buffers"].values()))),
            ("_modules", tuple([(k, self.value(c)) for k, c in d["_modules"].items()])),
        ]
        for name in _module_names(tuple(d)):
            v = d[name]
            if type(v) in _ATOMS:
                state.append((name, v))
            elif not (isinstance(v, dict) and not v):  # empty hook dicts: most of them
                state.append((name, self.value(v)))
        return tuple(state)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return None


def _slot_names(cls: type) -> tuple[str, ...]:
    slots = vars(cls).get("__slots__", ())
    names = (slots,) if isinstance(slots, str) else tuple(slots)
    return tuple(n for n in names if n not in ("__dict__", "__weakref__"))


_HIDDEN = {"module", "_modules"}
_WHAT = {"inputs": "the inputs' shapes", "grad": "the gradient mode", "handlers": "a handler"}


def changed(before: Any, after: Any, path: tuple[str, ...] = ()) -> str | None:
    """Where two keys differ, as a dotted path (``model.likelihood.T``), or None."""
    if before == after:
        return None
    if isinstance(before, tuple) and isinstance(after, tuple):
        named = len(before) == len(after) == 2 and isinstance(before[0], str)
        if named and before[0] == after[0]:
            return changed(before[1], after[1], (*path, before[0]))
        if len(before) == len(after) and not named:
            for a, b in zip(before, after, strict=True):
                if a != b:
                    return changed(a, b, path)
    if path and path[0] in _WHAT:
        return _WHAT[path[0]]
    names = [p for p in path if p not in _HIDDEN]
    return "the attribute " + ".".join(names) if names else "the module"
