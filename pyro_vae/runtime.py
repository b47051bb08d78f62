"""Device choice, seeding and the Pyro settings the training path runs under."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pyro
import torch
from pyro.nn import PyroModule
from pyro.nn.module import _is_module_local_param_enabled as _module_local_enabled
from torch import nn
from tqdm.auto import tqdm


class DeviceError(RuntimeError):
    """The asked-for device is not available."""


_interrupted = False


def on_interrupt(signum: int, frame: object) -> None:
    """SIGINT handler (installed by the CLI): raise KeyboardInterrupt as Python's default does,
    and remember it, so that :func:`check_interrupt` stops the training loop at its next step
    even when the exception was swallowed on its way up (it can land inside a callback whose
    caller discards exceptions)."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived and nobody has acted on it yet."""
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt


def clear_interrupt() -> None:
    """The Ctrl-C has been handled."""
    global _interrupted
    _interrupted = False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when available, else CPU. Asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"--device {name} asked for CUDA, but torch {torch.__version__} sees no CUDA device; "
            "use --device cpu or --device auto"
        )
    return device


def set_seed(seed: int) -> None:
    """Seed torch, numpy and Python's random (``pyro.set_rng_seed``)."""
    pyro.set_rng_seed(seed)


def rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())  # type: ignore[union-attr]
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)  # type: ignore[union-attr]


@contextlib.contextmanager
def module_local_params(
    *modules: nn.Module, enabled: bool = True, store: dict | None = None
) -> Iterator[None]:
    """Run ``modules`` with parameters owned by the nn.Modules, not Pyro's global param store.

    With ``enabled=False`` (needed by Pyro 1.9.2's Jit ELBOs, which read parameters from the
    param store) the run still gets a private param store, so names of other models in the
    process cannot leak in: a fresh one, or ``store`` (a state dict kept between calls, so that
    a compiled loss finds its parameters again).
    """
    if enabled:
        for module in modules:
            _allow_local_params(module)
    with (
        pyro.settings.context(module_local_params=enabled),
        pyro.get_param_store().scope(store),
    ):
        yield


@contextlib.contextmanager
def inference(*modules: nn.Module) -> Iterator[None]:
    """Run ``modules`` for inference: module-local parameters, evaluation mode (batch norm's
    running averages, no dropout) and no gradients; the modes are restored on exit."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with module_local_params(*modules), fast_modules(), torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _allow_local_params(module: nn.Module) -> None:
    # Pyro 1.9.2: a PyroModule built while module_local_params was off lacks the private
    # parameter state that module-local mode reads (AttributeError 'param_state' on call).
    # The state is an empty dict until used, so adding it lets models built either way (e.g.
    # for the SVI contract) also run module-local. Only roots matter: submodules share them.
    if isinstance(module, PyroModule) and not hasattr(module._pyro_context, "param_state"):
        module._pyro_context.param_state = {"params": {}, "constraints": {}}


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


@functools.cache
def fixed_mmap_threshold(size: int = 1 << 20) -> bool:
    """Serve every allocation of ``size`` bytes or more with its own ``mmap`` (glibc only).

    glibc raises its mmap threshold to the size of each large block freed (up to 32 MB), after
    which blocks of that size come from the heap. The importance-sampled estimate allocates and
    frees tens of blocks of ~16 MB per datum; on the heap they fragment it, and a process that
    had trained first was seen growing by 100 MB/s during evaluation (13 GB for MNIST's test
    set). A fixed threshold returns such blocks to the system when freed. Returns whether the
    setting took (False off glibc)."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False


class LineProgress:
    """Progress as a plain line every ``interval`` seconds (``desc: n/total unit (p%),
    postfix``), for logs and other places where a progress bar's redrawing cannot show."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        interval: float = 10.0,
    ) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval, self.n, self.postfix = interval, 0, ""
        self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            line = f"{self.desc}: {self.n}/{self.total or '?'} {self.unit}{share}"
            print(line + (f", {self.postfix}" if self.postfix else ""), file=sys.stderr)

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    progress: bool | None,
) -> Any:
    """A tqdm bar on a terminal; where stderr is not one (a log file, a batch job) and
    ``progress`` is not False, a :class:`LineProgress`; nothing with ``progress=False``."""
    if progress is None and not sys.stderr.isatty():
        return LineProgress(iterable, total, desc, unit)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=progress is False)


_fast_modules = False


@contextlib.contextmanager
def fast_modules(enabled: bool = True) -> Iterator[None]:
    """Let :class:`FastPyroModule` s skip PyroModule's placeholder param messages (with
    module-local parameters on). Only for code that reads parameters from the modules: the
    trainer with a differentiable ELBO, evaluation; not ``RenyiELBO.loss_and_grads``, which
    finds what to train in the trace's param sites."""
    global _fast_modules
    before, _fast_modules = _fast_modules, enabled
    try:
        yield
    finally:
        _fast_modules = before


class FastPyroModule(PyroModule):
    """A ``PyroModule`` whose plain ``nn.Module`` children are returned as they are inside
    :func:`fast_modules` with Pyro's module-local parameters on.

    There, ``PyroModule`` answers each access to such a child (``self.decoder``) with one
    placeholder ``param`` message per parameter, for handlers that watch ``pyro.param``; a
    differentiable ELBO's loss and gradients come from the modules' own parameters, so the
    messages change nothing there (tested for every prior, likelihood and guide) and cost ~0.2
    ms per step on a small network. Everywhere else PyroModule's behaviour is unchanged: plain
    ``SVI`` with the global param store keeps the ``pyro.module`` statements that register the
    children's parameters."""

    def __getattr__(self, name: str) -> Any:
        modules = self.__dict__.get("_modules")
        if _fast_modules and modules is not None and name in modules and _module_local_enabled():
            child = modules[name]
            if not isinstance(child, PyroModule):
                return child
        return super().__getattr__(name)
