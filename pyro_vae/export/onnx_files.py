"""The same computations as ONNX files (``--format onnx``, needs the ``onnx`` package)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .interface import TRACE_BATCH, Interface
from .torchscript import Mean, Point, summary, verify


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


def onnx_blobs(
    model: nn.Module, guide: nn.Module, iface: Interface, probe: tuple[Tensor, Tensor]
) -> list[bytes]:
    """encoder.onnx and decoder.onnx (the TorchScript-based exporter, batch size dynamic),
    checked with ``onnx.checker`` (full check) and, where onnxruntime is installed, against
    the library. An operator ONNX lacks is one line naming it."""
    x, y = probe(iface, TRACE_BATCH, seed=0)
    sites = [name for name, _ in iface.outputs]
    point = Point(guide, sites)
    images = x.reshape(-1, *iface.image_shape)
    z = summary(point(x, *([y] if iface.encoder_labels else [])), sites)[iface.code]
    encoder = _onnx_file(
        "encoder",
        _OnnxEncoder(point),
        (images, y) if iface.encoder_labels else (images,),
        ["x", "y"] if iface.encoder_labels else ["x"],
        sites,
    )
    decoder = _onnx_file(
        "decoder",
        _OnnxDecoder(Mean(model), iface.image_shape),
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
        verify(model, guide, iface, calls, probe)
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
