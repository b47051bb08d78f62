"""The traced training step: a Pyro ELBO's tensor operations recorded once, then replayed.

Every step of Pyro's SVI runs model and guide in Python under the effect handlers, records
both traces, and sums their log-densities; on a small network (or any network on a GPU) that
Python work costs more than the arithmetic. It repeats identically from step to step while the
inputs keep their shapes, so :class:`TracedLoss` runs the ELBO module once under
``torch.fx``'s tracer (``make_fx``, on fake tensors: no arithmetic, no random draws) and keeps
the graph of tensor operations it issued: the network layers, the reparameterized draws
(``normal_`` on the global generator, in the same order as Pyro draws them), the log-densities
and the ELBO's sum. Later steps replay that graph with the modules' parameters as inputs, under
autograd, so ``loss.backward()`` and the optimizer are unchanged.

Model, guide and objective stay Pyro programs; the graph is only a record of what they compute
for one input signature. It is exact by construction: the same operations in the same order on
the same draws (tests compare loss and gradients with Pyro's eager step for every prior,
likelihood and guide). A graph is keyed by what Python decided while tracing: the arguments'
shapes, dtypes and devices, the effect handlers active around the call (e.g. β of
:class:`~pyro_vae.objectives.ScaleLatents`), and a snapshot of the Python state of the module
tree (:func:`fingerprint`: every module's train/eval mode, children, parameter and buffer
objects, and plain attributes such as a likelihood's temperature set by a hook, followed into
lists, dicts, plain objects such as the ELBO, and functions' closures); a new key traces again
(a few tens of ms). The first call of each key also runs Pyro's eager step on the same draws
(random state and buffers put back after it), with Pyro's validation on for the very first, and
uses the graph only where both agree; :meth:`TracedLoss.recheck` (the trainer's, before each
epoch, after the hooks ran) asks for that check again on the next replay, for what the snapshot
cannot see (globals, class attributes). What cannot be traced (Python that reads tensor values),
or disagrees, or would need a new graph nearly every step, falls back to the eager step with one
line on stderr saying why.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pyro
import pyro.infer.trace_elbo
import pyro.infer.trace_mean_field_elbo
import pyro.infer.traceenum_elbo
import pyro.infer.tracegraph_elbo
import torch
from pyro.poutine.runtime import _PYRO_STACK
from torch import Tensor, fx, nn
from torch.fx.experimental.proxy_tensor import make_fx

from .runtime import rng_state, set_rng_state
from .snapshot import changed as first_change
from .snapshot import fingerprint, handler_key

aten = torch.ops.aten

# the training steps a run can take (TrainConfig.step)
STEPS = ("traced", "eager")
MAX_GRAPHS = 8  # graphs kept (least recently used dropped): full and last batch, β per epoch
THRASH_TRACES = 16  # after this many traces, give up if more than 1 call in 4 needs a new one


class TracedLoss:
    """``loss(*args)`` of a differentiable Pyro ELBO module, replayed from recorded graphs.

    Args:
        module: ``elbo(model, guide)``: an ``ELBOModule`` whose parameters live in the modules
            (Pyro's module-local parameters), called with tensors.
        report: where the one-line fall-back notice goes (default: stderr).
        snapshot_each_call: take the snapshot of the module tree's Python state (the key's
            :func:`fingerprint`) before every call. A caller that knows when Python may change
            that state (the trainer: after its hooks) passes False and calls :meth:`changed`
            then; the snapshot is also taken again after every eager run of the module.
    """

    def __init__(
        self,
        module: nn.Module,
        report: Callable[[str], None] | None = None,
        snapshot_each_call: bool = True,
    ) -> None:
        self.module = module
        self.snapshot_each_call = snapshot_each_call
        self._state: Any = None  # the module tree's snapshot, until it may have changed
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self.disabled: str | None = None  # why the eager step is used, once decided
        self.calls = 0
        self.traces = 0
        self.rechecks = 0  # replays checked again against Pyro's eager step
        self._recheck = False
        self._last_key: tuple | None = None  # the key that last needed a new graph
        self._report = report or (lambda line: print(line, file=sys.stderr))

    def __call__(self, *args: Tensor) -> Tensor:
        if self.disabled is not None or not all(isinstance(a, Tensor) for a in args):
            return self._eager(*args)
        self.calls += 1
        key = self._key(args)
        graph = self.graphs.get(key)
        if graph is not None:
            self.graphs.move_to_end(key)
            if self._recheck:
                self.rechecks += 1
                return self._checked(key, args, graph)
            return graph(args)
        if self.traces >= THRASH_TRACES and self.traces * 4 > self.calls:
            what = first_change(self._last_key, key) or "the inputs or handlers"
            return self._fall_back(
                f"a new graph was needed for {self.traces} of {self.calls} steps ({what} "
                "changes from step to step)",
                args,
            )
        self._last_key = key
        return self._checked(key, args)

    def changed(self) -> None:
        """Python code ran that may have changed the modules' state (a training hook): take
        the snapshot again before the next call."""
        self._state = None

    def recheck(self) -> None:
        """:meth:`changed`, and check the next replay against Pyro's eager step once more
        (falling back where they differ): for a change of Python state that the snapshot
        cannot see, such as a global or a class attribute. The trainer calls it before each
        epoch, after the hooks of the one before."""
        self._state = None
        self._recheck = True

    def _eager(self, *args: Tensor) -> Tensor:
        return self.module(*args)

    def _key(self, args: tuple[Tensor, ...]) -> tuple:
        if self._state is None or self.snapshot_each_call:
            self._state = fingerprint(self.module)
        return (
            ("inputs", tuple((a.shape, a.dtype, a.device) for a in args)),
            ("grad", torch.is_grad_enabled()),
            ("handlers", tuple(handler_key(h) for h in _PYRO_STACK)),
            ("module", self._state),  # modes, children, attributes, the ELBO's
        )

    def _checked(self, key: tuple, args: tuple[Tensor, ...], graph: _Graph | None = None) -> Tensor:
        """Take the step with ``graph`` (traced now for a new key, when None) where its loss
        agrees with Pyro's eager step on the same draws; else fall back."""
        self._recheck = False
        self._state = None  # the eager run below is Python: it may change the modules' state
        if not pyro.settings.get("module_local_params"):
            return self._fall_back("Pyro's global parameter store is in use", args)
        buffers = [b for b in self.module.buffers()]
        saved_buffers = [b.clone() for b in buffers]
        state = rng_state(args[0].device)
        expected = self._eager(*args).detach()  # with grad: some ELBOs check they have one
        set_rng_state(state, args[0].device)
        with torch.no_grad():
            for b, saved in zip(buffers, saved_buffers, strict=True):
                b.copy_(saved)
        new = graph is None
        if graph is None:
            try:
                graph = _Graph.trace(self.module, args)
            except Exception as e:
                set_rng_state(state, args[0].device)
                return self._fall_back(f"{type(e).__name__} at {_where(e)}: {_first_line(e)}", args)
            self.traces += 1
            set_rng_state(state, args[0].device)  # tracing draws nothing; made sure of
        loss = graph(args)
        why = None if _agree(loss.detach(), expected) else "disagrees"
        if why is None and new:
            # a recorded op may have no derivative outside its autograd.Function (a Beta's
            # draws, torch's _sample_dirichlet): a new graph's backward is tried once
            try:
                params = [p for p in self.module.parameters() if p.requires_grad]
                torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            except RuntimeError as e:
                why = f"its backward fails: {_first_line(e)}"
        if why is not None and why != "disagrees":
            set_rng_state(state, args[0].device)
            with torch.no_grad():
                for b, saved in zip(buffers, saved_buffers, strict=True):
                    b.copy_(saved)
            return self._fall_back(f"the traced loss is Pyro's, but {why}", args)
        if why is not None:
            # undo the graph's step: put the draws and buffers back and let Pyro take it
            set_rng_state(state, args[0].device)
            with torch.no_grad():
                for b, saved in zip(buffers, saved_buffers, strict=True):
                    b.copy_(saved)
            later = (
                ""
                if new
                else " when checked again (Python state the graph cannot see changed, e.g. a "
                "global or a class attribute)"
            )
            return self._fall_back(
                f"the traced loss {loss.item():.6g} differs from Pyro's {expected.item():.6g}"
                + later,
                args,
            )
        if new:
            self.graphs[key] = graph
            if len(self.graphs) > MAX_GRAPHS:
                self.graphs.popitem(last=False)
        return loss

    def _fall_back(self, why: str, args: tuple[Tensor, ...]) -> Tensor:
        self.disabled = why
        self.graphs.clear()
        self._report(f"note: training with Pyro's eager step (no traced step): {why}")
        return self._eager(*args)


class _Graph:
    """One recorded graph and the parameter/buffer tensors it takes as inputs."""

    def __init__(self, gm: fx.GraphModule, tensors: list[Tensor]) -> None:
        self.forward = gm.forward
        self.gm = gm
        self.tensors = tensors

    def __call__(self, args: tuple[Tensor, ...]) -> Tensor:
        return self.forward(*self.tensors, *args)

    @classmethod
    def trace(cls, module: nn.Module, args: tuple[Tensor, ...]) -> _Graph:
        slots, tensors = _slots(module)
        n = len(tensors)

        def loss(*inputs: Tensor) -> Tensor:
            # the tracer's stand-ins take the parameters' and buffers' places for one call
            for owner, name, i in slots:
                owner[name] = inputs[i]
            try:
                return module(*inputs[n:])
            finally:
                for owner, name, i in slots:
                    owner[name] = tensors[i]

        with pyro.validation_enabled(False), _without_host_reads():
            gm = make_fx(loss, tracing_mode="fake")(*tensors, *args)
        out = next(node for node in gm.graph.nodes if node.op == "output")
        if not isinstance(_value(out.args[0]), Tensor):
            raise TypeError("the ELBO module did not return one tensor")
        simplify(gm)
        return cls(gm, tensors)


def _slots(module: nn.Module) -> tuple[list[tuple[dict, str, int]], list[Tensor]]:
    """Where each parameter and buffer of ``module`` is held (owner's dict, name, index), and
    the distinct tensors. Written by hand rather than with ``torch.func.functional_call``,
    which leaves a module shared by model and guide (M2's classifier) holding the tracer's
    stand-ins afterwards."""
    slots: list[tuple[dict, str, int]] = []
    index: dict[int, int] = {}
    tensors: list[Tensor] = []
    for m in module.modules():
        for holder in (m._parameters, m._buffers):
            for name, t in holder.items():
                if t is None:
                    continue
                if id(t) not in index:
                    index[id(t)] = len(tensors)
                    tensors.append(t)
                slots.append((holder, name, index[id(t)]))
    return slots, tensors


# Pyro's ELBOs read the loss's value as a Python float (`torch_item`, one host sync each on a
# GPU) and check it for NaN (`warn_if_nan`) on every step. In `differentiable_loss` the float
# only enters as `loss + (surrogate - float(surrogate))`, so a detached tensor gives the same
# value; NaN is caught by the trainer's own finiteness checks. Tracing cannot read values, so
# these two helpers are swapped while (and only while) a graph is recorded.
_ELBO_MODULES = (
    pyro.infer.trace_elbo,
    pyro.infer.trace_mean_field_elbo,
    pyro.infer.traceenum_elbo,
    pyro.infer.tracegraph_elbo,
)


def _detached(x: Any) -> Any:
    return x.detach() if isinstance(x, Tensor) else x


def _unchecked(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


@contextlib.contextmanager
def _without_host_reads() -> Iterator[None]:
    saved = [(m, vars(m).get("torch_item"), vars(m).get("warn_if_nan")) for m in _ELBO_MODULES]
    try:
        for m, item, nan in saved:
            if item is not None:
                m.torch_item = _detached  # type: ignore[attr-defined]
            if nan is not None:
                m.warn_if_nan = _unchecked  # type: ignore[attr-defined]
        yield
    finally:
        for m, item, nan in saved:
            if item is not None:
                m.torch_item = item  # type: ignore[attr-defined]
            if nan is not None:
                m.warn_if_nan = nan  # type: ignore[attr-defined]


def _agree(a: Tensor, b: Tensor) -> bool:
    # float32 sums in another order (Pyro adds the sites' values as Python floats)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-3, equal_nan=True))


def _where(e: BaseException) -> str:
    """The innermost frame of ``e``'s traceback outside torch: the line that asked for what a
    graph cannot record (e.g. a Python ``if`` on a tensor's value)."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [
        f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(torch_dir)
    ]
    if not frames:
        return "torch"
    path = frames[-1].filename
    short = path.split("site-packages" + os.sep, 1)[-1] if "site-packages" in path else path
    return f"{os.path.relpath(short) if os.path.isabs(short) else short}:{frames[-1].lineno}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else "(no message)"


# -- graph simplification ---------------------------------------------------------------------
# make_fx records every operation Pyro and torch.distributions issue, including many that
# compute nothing on replay: expand/view to the shape a tensor already has, `x + 0`, `x / 1`,
# `x ** 1`, transposes feeding a matrix product (a linear layer issues t + addmm), repeated
# sums, and operations whose results are never used. Each costs a Python call per step on
# replay, so they are removed; the arithmetic that remains is the same, in the same order.

_IDENTITY = {
    aten.add.Tensor: 0,
    aten.sub.Tensor: 0,
    aten.mul.Tensor: 1,
    aten.div.Tensor: 1,
    aten.pow.Tensor_Scalar: 1,
}
_SAME_SHAPE_VIEWS = {aten.expand.default, aten.view.default, aten.reshape.default}


def _value(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def _signature(node: Any) -> tuple | None:
    v = _value(node)
    return (tuple(v.shape), v.dtype, v.device) if isinstance(v, Tensor) else None


def _mutates(node: fx.Node) -> bool:
    t = node.target
    return isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable


def _random(node: fx.Node) -> bool:
    t = node.target
    return isinstance(t, torch._ops.OpOverload) and torch.Tag.nondeterministic_seeded in t.tags


def _mutated(node: fx.Node) -> bool:
    return any(_mutates(user) for user in node.users)


def _fresh(node: fx.Node) -> bool:
    """A newly allocated tensor (``empty``, ``empty_like``, ``new_empty``...)."""
    t = node.target
    return isinstance(t, torch._ops.OpOverload) and "empty" in t._schema.name


def _pure(node: fx.Node) -> bool:
    return node.op == "call_function" and not (
        _mutates(node) or _random(node) or _mutated(node) or _fresh(node)
    )


def simplify(gm: fx.GraphModule) -> fx.GraphModule:
    """Remove the operations of a ``make_fx`` graph that compute nothing (see above), merge
    repeated ones, and drop unused ones (never a random draw: the stream must not shift)."""
    graph = gm.graph
    # Removing or merging is safe when nothing is written in place but fresh tensors (a
    # draw filling `empty`); a graph that updates buffers (batch norm) keeps its order.
    rewrite = all(
        isinstance(m.args[0], fx.Node) and _fresh(m.args[0])
        for m in graph.nodes
        if m.op == "call_function" and _mutates(m)
    )
    seen: dict[tuple, fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == aten.addmm.default and len(node.args) == 3 and not node.kwargs:
            bias, x, wt = node.args
            sig, bias_sig = _signature(x), _signature(bias)
            if (
                isinstance(wt, fx.Node)
                and wt.target == aten.t.default
                and sig is not None
                and len(sig[0]) == 2
                and bias_sig is not None
                and len(bias_sig[0]) == 1
            ):
                with graph.inserting_before(node):
                    linear = graph.call_function(aten.linear.default, (x, wt.args[0], bias))
                linear.meta = dict(node.meta)
                node.replace_all_uses_with(linear)
                continue
        if not rewrite:
            continue
        src = node.args[0] if node.args else None
        same = (
            isinstance(src, fx.Node)
            and _signature(src) is not None
            and _signature(src) == _signature(node)
            and not _mutated(node)
            and not _mutated(src)
        )
        if node.target in _SAME_SHAPE_VIEWS and same:
            node.replace_all_uses_with(src)
            continue
        if (
            node.target in _IDENTITY
            and same
            and len(node.args) == 2
            and not node.kwargs
            and isinstance(node.args[1], int | float)
            and node.args[1] == _IDENTITY[node.target]
        ):
            node.replace_all_uses_with(src)
            continue
        if _pure(node):
            key = (node.target, _hashable(node.args), _hashable(node.kwargs))
            if key[1] is not None and key[2] is not None:
                if key in seen:
                    node.replace_all_uses_with(seen[key])
                    continue
                seen[key] = node
    for node in reversed(list(graph.nodes)):
        if node.op == "call_function" and not node.users and not (_mutates(node) or _random(node)):
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return gm


def _hashable(value: Any) -> Any:
    """A hashable form of node arguments, or None where they hold something unhashable."""
    if isinstance(value, fx.Node | int | float | bool | str | type(None) | torch.dtype):
        return value
    if isinstance(value, torch.device | torch.memory_format | torch.layout):
        return value
    if isinstance(value, list | tuple):
        items = tuple(_hashable(v) for v in value)
        return (
            None
            if any(i is None and v is not None for i, v in zip(items, value, strict=True))
            else items
        )
    if isinstance(value, dict):
        items = tuple((k, _hashable(v)) for k, v in sorted(value.items()))
        return None if any(i is None and value[k] is not None for k, i in items) else items
    return None


__all__ = ["STEPS", "TracedLoss", "fingerprint", "simplify"]
