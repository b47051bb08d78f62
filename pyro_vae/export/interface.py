"""What the exported modules take and return, found from a run's model and guide, and
the export.json that says so."""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..inputs import chw

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


def probe(iface: Interface, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Made-up model inputs: rows (n, C*H*W) of grey levels k/255 and one-hot labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *iface.image_shape), generator=gen).float().div(255)
    y = torch.nn.functional.one_hot(torch.arange(n) % iface.num_classes, iface.num_classes)
    return x.reshape(n, -1), y.float()


def interface(run: Any, model: nn.Module, guide: nn.Module) -> Interface:
    """Inputs and outputs of the exported modules: the labels the guide's ``point`` and the
    model's ``decode`` need, the sites of the point summary and the one the decoder reads.
    Called inside :func:`tracing`."""
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
    x, y = probe(partial, TRACE_BATCH, seed=0)
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
