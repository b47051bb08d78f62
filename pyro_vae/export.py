"""A trained run's encoder and decoder as files that run with torch alone (``pyro-vae export``).

``export(run, out)`` writes into the folder ``out``:

- ``encoder.pt``: images -> the guide's point summary, ``guide.point(x)`` (the posterior mean
  E_q[z | x] for the Normal guides; each guide documents its own: the code of the delta guide,
  the flows applied to the base mean for IAF). Input: a batch of images ``(n, C, H, W)``,
  float in [0, 1] or uint8 0..255 (divided by 255 inside), as the run's data were stored;
  output: the codes ``(n, z_dim)``. A guide whose summary has several sites (the hierarchical
  kind: ``z1``, ``z2``) returns one tensor per site, a tuple in the order ``export.json`` lists.
- ``decoder.pt``: codes ``(n, z_dim)`` -> mean images ``(n, C, H, W)``, E[x | z] under the
  run's likelihood (``model.decode(z).mean``: probabilities for Bernoulli, the discretized
  logistic's mean over the 256 levels, the Normal's location...), in the data's scale ([0, 1]
  for 8-bit and binary images). The hierarchical kind decodes from the lower code ``z1``.
- ``export.json``: what each file takes and returns, and the run they came from.

Kinds whose model needs labels (``cvae``, ``m2``) take one-hot labels ``y (n, num_classes)``
(float; int64 class indices ``(n,)`` are accepted too) as a second input of the decoder, and
of the encoder where the guide's point summary needs them (``cvae``: q(z | x, y); ``m2``'s
guide classifies x itself and returns z at the most probable class).

The files are TorchScript (``torch.jit.load(path)(x)``): the library's own functions traced
on the CPU into plain tensor operations, behind a small scripted front that checks and
converts the inputs. Loading them needs neither Pyro nor pyro-vae. Traced on the CPU, they
are meant to run there. With ``format="onnx"`` (needs the ``onnx`` package) the same
computations are written as ``encoder.onnx`` / ``decoder.onnx`` for float32 inputs.

Every export is checked before anything is written: the modules, as they will be loaded, must
reproduce the library's outputs on a batch of another size than the one traced.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyro
import torch
from torch import Tensor, nn

from . import __version__, checkpoint
from . import run as runs
from .inputs import chw
from .registry import unknown
from .runtime import inference

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": ("encoder.pt", "decoder.pt"), "onnx": ("encoder.onnx", "decoder.onnx")}
MANIFEST = "export.json"
EXPORTED_BY = "pyro-vae export"

# the batch sizes the modules are traced on and then checked on (different on purpose)
TRACE_BATCH, CHECK_BATCH = 3, 5


@dataclass(frozen=True)
class Interface:
    """What the exported modules take and return, found from the run's model and guide."""

    image_shape: tuple[int, int, int]
    num_classes: int
    encoder_labels: bool  # the guide's point summary needs the labels
    decoder_labels: bool  # the model decodes p(x | z, y)
    outputs: tuple[tuple[str, int], ...]  # the point summary's sites and widths, in order
    code: str  # the site the decoder reads

    @property
    def code_dim(self) -> int:
        return dict(self.outputs)[self.code]


def export(run: Any, out: str | os.PathLike, format: str = "torchscript") -> list[Path]:
    """Write the run's encoder and decoder into the folder ``out`` (made if missing) as
    ``format`` (``torchscript``: encoder.pt and decoder.pt; ``onnx``: encoder.onnx and
    decoder.onnx), plus ``export.json``; returns the paths written. ``run``: a
    :class:`~pyro_vae.run.Run` (``run.load(path, dataset=False)`` restores one without its
    data). A folder that already holds encoder or decoder files is refused unless it is an
    earlier export (it has this exporter's export.json): those files are then replaced; no
    other file is touched. Files are written atomically, and only after the modules have
    been checked against the library (see the module's docstring)."""
    names = _check_format(format)
    out = Path(out)
    _check_out(out)
    model, guide = _on_cpu(run.model, run.guide)
    with _tracing(model, guide):
        iface = interface(run, model, guide)
        probe = _probe(iface, CHECK_BATCH, seed=1)
        if format == "torchscript":
            blobs = [_saved(module) for module in _traced(model, guide, iface)]
            _verify(model, guide, iface, [_loaded(b) for b in blobs], probe)
        else:
            blobs = _onnx_blobs(model, guide, iface, probe)
    out.mkdir(parents=True, exist_ok=True)
    written = [_write(out / name, blob) for name, blob in zip(names, blobs, strict=True)]
    text = json.dumps(manifest(run, iface, format), indent=2) + "\n"
    written.append(_write(out / MANIFEST, text.encode()))
    return written


def export_checkpoint(
    path: str | os.PathLike, out: str | os.PathLike, format: str = "torchscript"
) -> list[Path]:
    """:func:`export` for the run whose ``checkpoint.pt`` is at ``path`` (restored on the
    CPU without its data)."""
    _check_format(format)
    _check_out(Path(out))
    return export(runs.load(path, device="cpu", dataset=False), out, format)


# -- what the modules take and return ------------------------------------------------------


def interface(run: Any, model: nn.Module, guide: nn.Module) -> Interface:
    """Inputs and outputs of the exported modules: the labels the guide's ``point`` and the
    model's ``decode`` need, the sites of the point summary and the one the decoder reads.
    Called inside :func:`_tracing`."""
    kind = run.kind
    point = getattr(guide, "point", None)
    if point is None:
        raise ValueError(
            f"the {type(guide).__name__} guide of this run has no point(x) summary, so it "
            "has no encoder to export: give the guide a point(x) method"
        )
    extra = _required_arguments(point) - 1
    if extra not in (0, 1) or (extra and not kind.needs_labels):
        raise ValueError(
            f"cannot export --model {run.model_config.model}: its guide's point() takes "
            f"{extra + 1} inputs; the exporter supports point(x), and point(x, y) for kinds "
            "with labels"
        )
    shape = chw(run.data.image_shape)
    k = int(run.model_config.num_classes)
    partial = Interface(shape, k, bool(extra), bool(kind.needs_labels), (), "")
    x, y = _probe(partial, TRACE_BATCH, seed=0)
    summary = point(x, *([y] if extra else []))
    if isinstance(summary, Tensor):
        summary = {"z": summary}
    if not isinstance(summary, dict) or not all(
        isinstance(v, Tensor) and v.dim() == 2 for v in summary.values()
    ):
        raise ValueError(
            f"cannot export --model {run.model_config.model}: its guide's point(x) gives "
            f"{type(summary).__name__}, not codes (n, d) or a dict of them"
        )
    outputs = tuple((str(name), int(v.shape[-1])) for name, v in summary.items())
    labels = [y] if kind.needs_labels else []
    code = _decoder_code(kind, model, guide, summary, x, labels)
    return Interface(shape, k, bool(extra), bool(kind.needs_labels), outputs, code)


def _required_arguments(fn: Any) -> int:
    """How many positional arguments without a default ``fn`` takes."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(
        p.kind in positional and p.default is p.empty
        for p in inspect.signature(fn).parameters.values()
    )


def _decoder_code(
    kind: Any,
    model: nn.Module,
    guide: nn.Module,
    summary: dict[str, Tensor],
    x: Tensor,
    labels: list[Tensor],
) -> str:
    """The site of the point summary that ``model.decode`` reads: the only one, or, of
    several, the one the kind's reconstruction E[x | z at the point summary] decodes."""
    if len(summary) == 1:
        return next(iter(summary))
    means = {}
    for name, z in summary.items():
        with contextlib.suppress(RuntimeError, ValueError):
            means[name] = model.decode(z, *labels).mean
    if len(means) > 1:
        try:
            target = kind.reconstruct(SimpleNamespace(model=model, guide=guide), x)
        except (RuntimeError, ValueError, TypeError, KeyError):
            target = None
        means = {
            name: mean
            for name, mean in means.items()
            if target is not None and mean.shape == target.shape and torch.allclose(mean, target)
        }
    if len(means) != 1:
        raise ValueError(
            f"cannot tell which code of the point summary ({', '.join(summary)}) the decoder "
            "reads: the kind's reconstruct(run, x) must decode one of them"
        )
    return next(iter(means))


def manifest(run: Any, iface: Interface, format: str) -> dict[str, Any]:
    """The contents of export.json."""
    c, h, w = iface.image_shape
    k = iface.num_classes
    encoder_file, decoder_file = FILES[format]
    images = {
        "name": "x",
        "shape": ["n", c, h, w],
        "dtype": "float32 in [0, 1]" if format == "onnx" else "float in [0, 1], or uint8 0..255",
    }
    labels = {
        "name": "y",
        "shape": ["n", k],
        "dtype": "float32 one-hot" if format == "onnx" else "float one-hot, or int64 (n,)",
    }
    config = run.model_config
    return {
        "exported_by": f"{EXPORTED_BY} {__version__}",
        "format": format,
        "torch": torch.__version__,
        "device": "cpu",
        "run": str(run.out) if run.out is not None else None,
        "model": config.model,
        "guide": config.guide,
        "likelihood": config.likelihood,
        "prior": config.prior,
        "dataset": run.train_config.dataset,
        "image_shape": [c, h, w],
        "num_classes": k if iface.encoder_labels or iface.decoder_labels else None,
        "encoder": {
            "file": encoder_file,
            "computes": "the guide's point summary of z given x (guide.point)",
            "inputs": [images, *([labels] if iface.encoder_labels else [])],
            "outputs": [{"name": name, "shape": ["n", d]} for name, d in iface.outputs],
        },
        "decoder": {
            "file": decoder_file,
            "computes": f"E[x | {iface.code}] under the {config.likelihood} likelihood "
            "(model.decode(z).mean)",
            "inputs": [
                {"name": iface.code, "shape": ["n", iface.code_dim], "dtype": "float32"},
                *([labels] if iface.decoder_labels else []),
            ],
            "outputs": [{"name": "mean", "shape": ["n", c, h, w]}],
        },
    }


# -- tracing --------------------------------------------------------------------------------


class _Point(nn.Module):
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


class _Mean(nn.Module):
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
def _tracing(model: nn.Module, guide: nn.Module) -> Iterator[None]:
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


def _on_cpu(model: nn.Module, guide: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The run's modules, or CPU copies of them (copied together: they share networks)."""
    tensors = [*model.parameters(), *model.buffers(), *guide.parameters(), *guide.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model, guide
    model, guide = copy.deepcopy((model, guide))
    return model.cpu(), guide.cpu()


def _probe(iface: Interface, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Made-up model inputs: rows (n, C*H*W) of grey levels k/255 and one-hot labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *iface.image_shape), generator=gen).float().div(255)
    y = torch.nn.functional.one_hot(torch.arange(n) % iface.num_classes, iface.num_classes)
    return x.reshape(n, -1), y.float()


def _traced(model: nn.Module, guide: nn.Module, iface: Interface) -> tuple[nn.Module, nn.Module]:
    """The scripted encoder and decoder around the traced computations."""
    x, y = _probe(iface, TRACE_BATCH, seed=0)
    sites = [name for name, _ in iface.outputs]
    point = _Point(guide, sites)
    enc_args = (x, y) if iface.encoder_labels else (x,)
    inner_encoder = torch.jit.trace(point, enc_args, check_trace=False)  # _verify checks
    z = _summary(point(*enc_args), sites)[iface.code]
    dec_args = (z, y) if iface.decoder_labels else (z,)
    inner_decoder = torch.jit.trace(_Mean(model), dec_args, check_trace=False)
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


def _summary(output: Tensor | tuple[Tensor, ...], sites: Sequence[str]) -> dict[str, Tensor]:
    outputs = (output,) if isinstance(output, Tensor) else output
    return dict(zip(sites, outputs, strict=True))


def _saved(module: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def _loaded(blob: bytes) -> Any:
    return torch.jit.load(io.BytesIO(blob), map_location="cpu")


def _verify(
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
    want = _summary(_Point(guide, sites)(x, *([y] if iface.encoder_labels else [])), sites)
    got = _summary(encoder(images, *([y] if iface.encoder_labels else [])), sites)
    z = want[iface.code]
    labels = [y] if iface.decoder_labels else []
    _same("encoder", "guide.point(x)", got, want)
    mean = model.decode(z, *labels).mean.reshape(images.shape)
    _same("decoder", "model.decode(z).mean", {"mean": decoder(z, *labels)}, {"mean": mean})


def _same(what: str, reference: str, got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
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


# -- ONNX -----------------------------------------------------------------------------------


class _OnnxEncoder(nn.Module):
    def __init__(self, point: nn.Module) -> None:
        super().__init__()
        self.point = point
        self.train(False)

    def forward(self, x: Tensor, *labels: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.point(x.reshape(x.shape[0], -1), *labels)


class _OnnxDecoder(nn.Module):
    def __init__(self, mean: nn.Module, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.mean = mean
        self.shape = shape
        self.train(False)

    def forward(self, z: Tensor, *labels: Tensor) -> Tensor:
        return self.mean(z, *labels).reshape(z.shape[0], *self.shape)


def _onnx_blobs(
    model: nn.Module, guide: nn.Module, iface: Interface, probe: tuple[Tensor, Tensor]
) -> list[bytes]:
    """encoder.onnx and decoder.onnx (the TorchScript-based exporter, batch size dynamic),
    checked with ``onnx.checker`` (full check) and, where onnxruntime is installed, against
    the library. An operator ONNX lacks is one line naming it."""
    x, y = _probe(iface, TRACE_BATCH, seed=0)
    sites = [name for name, _ in iface.outputs]
    point = _Point(guide, sites)
    images = x.reshape(-1, *iface.image_shape)
    z = _summary(point(x, *([y] if iface.encoder_labels else [])), sites)[iface.code]
    encoder = _onnx_file(
        "encoder",
        _OnnxEncoder(point),
        (images, y) if iface.encoder_labels else (images,),
        ["x", "y"] if iface.encoder_labels else ["x"],
        sites,
    )
    decoder = _onnx_file(
        "decoder",
        _OnnxDecoder(_Mean(model), iface.image_shape),
        (z, y) if iface.decoder_labels else (z,),
        [iface.code, "y"] if iface.decoder_labels else [iface.code],
        ["mean"],
    )
    blobs = [encoder, decoder]
    _verify_onnx(model, guide, iface, blobs, probe)
    return blobs


def _onnx_file(
    what: str,
    module: nn.Module,
    args: tuple[Tensor, ...],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> bytes:
    """One module as ONNX bytes, refused in one line where the exporter or the checker fails.
    (torch's TorchScript-based exporter mishandles some graphs: ``aten::diag_embed`` has no
    ONNX form (the fullcov guide), and the logistic mixture's unflatten/movedim comes out
    malformed, the checker failing at random or even running out of memory.)"""
    import onnx  # checked by _check_format

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{what}.onnx"
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes={name: {0: "n"} for name in [*inputs, *outputs]},
                dynamo=False,
            )
            onnx.checker.check_model(str(path), full_check=True)
            proto = onnx.load(str(path))
        except (
            RuntimeError,
            MemoryError,
            onnx.checker.ValidationError,
            onnx.shape_inference.InferenceError,
        ) as e:
            raise _onnx_refused(what, e) from None
        for node in proto.graph.node:
            perm = [a.ints for a in node.attribute if a.name == "perm"]
            if node.op_type == "Transpose" and perm and min(perm[0], default=0) < 0:
                # the reference evaluator accepts it, onnxruntime does not
                reason = ValueError(f"Transpose {node.name} has negative axes {list(perm[0])}")
                raise _onnx_refused(what, reason)
        return path.read_bytes()


def _onnx_refused(what: str, error: Exception) -> ValueError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return ValueError(
        f"the {what} of this run cannot be exported to ONNX ({reason}); use --format torchscript"
    )


def _verify_onnx(
    model: nn.Module,
    guide: nn.Module,
    iface: Interface,
    blobs: Sequence[bytes],
    probe: tuple[Tensor, Tensor],
) -> None:
    """The ONNX files must reproduce the library too: run by onnxruntime where it is
    installed, else by the onnx package's reference evaluator."""
    calls = []
    for what, blob in zip(("encoder", "decoder"), blobs, strict=True):
        try:
            calls.append(_onnx_call(blob))
        except Exception as e:  # the runtimes' own exception classes derive from Exception
            raise _onnx_refused(what, e) from None
    try:
        _verify(model, guide, iface, calls, probe)
    except ValueError:
        raise
    except Exception as e:
        raise _onnx_refused("model", e) from None


def _onnx_call(blob: bytes) -> Any:
    """An ONNX model called like the TorchScript module (tensors in and out)."""
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        run = lambda feeds: session.run(None, feeds)  # noqa: E731
    else:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(blob)
        names = list(evaluator.input_names)
        run = lambda feeds: evaluator.run(None, feeds)  # noqa: E731

    def call(*args: Tensor) -> Tensor | tuple[Tensor, ...]:
        feeds = {name: a.numpy() for name, a in zip(names, args, strict=True)}
        outs = tuple(torch.from_numpy(o) for o in run(feeds))
        return outs[0] if len(outs) == 1 else outs

    return call


# -- the output folder ----------------------------------------------------------------------


def _check_format(format: str) -> tuple[str, str]:
    if format not in FORMATS:
        raise ValueError(unknown("export format", format, FORMATS))
    if format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError("--format onnx needs the onnx package: pip install onnx") from None
    return FILES[format]


def _check_out(out: Path) -> None:
    """Refuse a file, and a folder holding encoder/decoder files that no export wrote."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file: give --out a folder")
    ours = {name for names in FILES.values() for name in names}
    found = sorted(name for name in ours if (out / name).exists())
    if found and not _is_export(out / MANIFEST):
        raise FileExistsError(
            f"{out} holds {', '.join(found)} but no export.json of pyro-vae: choose another "
            "--out, or move those files away"
        )


def _is_export(path: Path) -> bool:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and str(saved.get("exported_by", "")).startswith(EXPORTED_BY)


def _write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    checkpoint.remove_stale(path)
    return checkpoint.write_atomically(path, lambda f: f.write(data))


__all__ = ["FORMATS", "Interface", "export", "export_checkpoint", "interface", "manifest"]
