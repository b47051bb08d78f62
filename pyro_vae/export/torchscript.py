"""The library's own functions traced into TorchScript modules that need torch alone, and
the check that the modules, as loaded, reproduce the library."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyro
import torch
from torch import Tensor, nn

from ..runtime import inference
from .interface import TRACE_BATCH, Interface, probe


class Point(nn.Module):
    """Float rows (n, C*H*W) [and labels] -> the guide's point summary (traced)."""

    def __init__(self, guide: nn.Module, sites: Sequence[str]) -> None:
        super().__init__()
        self.guide = guide
        self.sites = tuple(sites)
        self.train(False)  # exporters restore the wrapper's mode: evaluation, as the run's

    def forward(self, x: Tensor, *labels: Tensor) -> Tensor | tuple[Tensor, ...]:
        summary = self.guide.point(x, *labels)
        if isinstance(summary, Tensor):
            return summary
        if len(self.sites) == 1:
            return summary[self.sites[0]]
        return tuple(summary[site] for site in self.sites)


class Mean(nn.Module):
    """Codes [and labels] -> E[x | z] as float rows (n, C*H*W) (traced)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(False)

    def forward(self, z: Tensor, *labels: Tensor) -> Tensor:
        return self.model.decode(z, *labels).mean


# the scripted fronts: checks and conversions of the inputs around the traced computation


def _rows(x: Tensor, c: int, h: int, w: int) -> Tensor:
    if x.dim() != 4 or x.shape[1] != c or x.shape[2] != h or x.shape[3] != w:
        raise ValueError(f"x must be images of shape (n, {c}, {h}, {w}); got {x.shape}")
    if x.dtype == torch.uint8:
        return x.reshape(x.shape[0], -1).float() / 255.0
    if not x.is_floating_point():
        raise ValueError(f"x must be float in [0, 1] or uint8 0..255; got {x.dtype}")
    return x.reshape(x.shape[0], -1).float()


def _labels(y: Tensor, n: int, k: int) -> Tensor:
    if y.dim() == 1 and not y.is_floating_point():
        if y.shape[0] != n or bool((y < 0).any()) or bool((y >= k).any()):
            raise ValueError(f"y must be {n} class indices in 0..{k - 1}; got {y.shape}")
        return torch.nn.functional.one_hot(y.long(), k).float()
    if y.dim() != 2 or y.shape[0] != n or y.shape[1] != k:
        raise ValueError(f"y must be one-hot labels of shape ({n}, {k}); got {y.shape}")
    return y.float()


def _codes(z: Tensor, d: int) -> Tensor:
    if z.dim() != 2 or z.shape[1] != d:
        raise ValueError(f"the codes must have shape (n, {d}); got {z.shape}")
    return z.float()


class _Encoder(nn.Module):
    def __init__(self, inner: nn.Module, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.inner = inner
        self.c, self.h, self.w = shape

    def forward(self, x: Tensor):  # a tensor, or a tuple of them (one per site)
        return self.inner(_rows(x, self.c, self.h, self.w))


class _LabelledEncoder(_Encoder):
    def __init__(self, inner: nn.Module, shape: tuple[int, int, int], k: int) -> None:
        super().__init__(inner, shape)
        self.k = k

    def forward(self, x: Tensor, y: Tensor):  # type: ignore[override]
        rows = _rows(x, self.c, self.h, self.w)
        return self.inner(rows, _labels(y, rows.shape[0], self.k))


class _Decoder(nn.Module):
    def __init__(self, inner: nn.Module, shape: tuple[int, int, int], d: int) -> None:
        super().__init__()
        self.inner = inner
        self.c, self.h, self.w = shape
        self.d = d

    def forward(self, z: Tensor) -> Tensor:
        z = _codes(z, self.d)
        return self.inner(z).reshape(z.shape[0], self.c, self.h, self.w)


class _LabelledDecoder(_Decoder):
    def __init__(self, inner: nn.Module, shape: tuple[int, int, int], d: int, k: int) -> None:
        super().__init__(inner, shape, d)
        self.k = k

    def forward(self, z: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        z = _codes(z, self.d)
        mean = self.inner(z, _labels(y, z.shape[0], self.k))
        return mean.reshape(z.shape[0], self.c, self.h, self.w)


@contextlib.contextmanager
def tracing(model: nn.Module, guide: nn.Module) -> Iterator[None]:
    """Inference mode (evaluation, module-local parameters, no gradients), no validation,
    and every parameter frozen: parameters a module reaches by reference rather than as a
    submodule (the ladder guide reads the model's top-down network) are then traced as
    constants instead of refused."""
    params = {id(p): p for m in (model, guide) for p in m.parameters()}
    flags = {key: p.requires_grad for key, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(False)
        with (
            inference(model, guide),
            pyro.validation_enabled(False),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX")
            warnings.filterwarnings("ignore", message=r"The feature will be removed")
            yield
    finally:
        for key, p in params.items():
            p.requires_grad_(flags[key])


def on_cpu(model: nn.Module, guide: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The run's modules, or CPU copies of them (copied together: they share networks)."""
    tensors = [*model.parameters(), *model.buffers(), *guide.parameters(), *guide.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model, guide
    model, guide = copy.deepcopy((model, guide))
    return model.cpu(), guide.cpu()


def traced(model: nn.Module, guide: nn.Module, iface: Interface) -> tuple[nn.Module, nn.Module]:
    """The scripted encoder and decoder around the traced computations."""
    x, y = probe(iface, TRACE_BATCH, seed=0)
    sites = [name for name, _ in iface.outputs]
    point = Point(guide, sites)
    enc_args = (x, y) if iface.encoder_labels else (x,)
    inner_encoder = torch.jit.trace(point, enc_args, check_trace=False)  # verify checks
    z = summary(point(*enc_args), sites)[iface.code]
    dec_args = (z, y) if iface.decoder_labels else (z,)
    inner_decoder = torch.jit.trace(Mean(model), dec_args, check_trace=False)
    shape, d, k = iface.image_shape, iface.code_dim, iface.num_classes
    encoder = (
        _LabelledEncoder(inner_encoder, shape, k)
        if iface.encoder_labels
        else _Encoder(inner_encoder, shape)
    )
    decoder = (
        _LabelledDecoder(inner_decoder, shape, d, k)
        if iface.decoder_labels
        else _Decoder(inner_decoder, shape, d)
    )
    return torch.jit.script(encoder), torch.jit.script(decoder)


def summary(output: Tensor | tuple[Tensor, ...], sites: Sequence[str]) -> dict[str, Tensor]:
    outputs = (output,) if isinstance(output, Tensor) else output
    return dict(zip(sites, outputs, strict=True))


def saved(module: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def loaded(blob: bytes) -> Any:
    return torch.jit.load(io.BytesIO(blob), map_location="cpu")


def verify(
    model: nn.Module,
    guide: nn.Module,
    iface: Interface,
    modules: Sequence[Any],
    probe: tuple[Tensor, Tensor],
) -> None:
    """Refuse an export whose modules do not reproduce ``guide.point`` and ``model.decode``
    (a computation whose trace does not generalise, e.g. one that branches on the data)."""
    encoder, decoder = modules
    x, y = probe
    images = x.reshape(-1, *iface.image_shape)
    sites = [name for name, _ in iface.outputs]
    want = summary(Point(guide, sites)(x, *([y] if iface.encoder_labels else [])), sites)
    got = summary(encoder(images, *([y] if iface.encoder_labels else [])), sites)
    z = want[iface.code]
    labels = [y] if iface.decoder_labels else []
    same("encoder", "guide.point(x)", got, want)
    mean = model.decode(z, *labels).mean.reshape(images.shape)
    same("decoder", "model.decode(z).mean", {"mean": decoder(z, *labels)}, {"mean": mean})


def same(what: str, reference: str, got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    for name, value in want.items():
        other = got.get(name)
        if (
            other is None
            or other.shape != value.shape
            or not torch.allclose(other, value, rtol=1e-4, atol=1e-5)
        ):
            raise ValueError(
                f"the traced {what} does not reproduce {reference} ({name}) on a batch of "
                f"another size: its computation depends on the data in a way a trace cannot "
                "capture; this run cannot be exported"
            )
