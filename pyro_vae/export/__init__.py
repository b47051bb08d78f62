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

import json
import os
from pathlib import Path
from typing import Any

from .. import checkpoint
from .. import run as runs
from ..registry import unknown
from .interface import (
    CHECK_BATCH,
    EXPORTED_BY,
    FILES,
    FORMATS,
    MANIFEST,
    Interface,
    interface,
    manifest,
    probe,
)
from .onnx_files import onnx_blobs
from .torchscript import loaded, on_cpu, saved, traced, tracing, verify


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
    model, guide = on_cpu(run.model, run.guide)
    with tracing(model, guide):
        iface = interface(run, model, guide)
        check = probe(iface, CHECK_BATCH, seed=1)
        if format == "torchscript":
            blobs = [saved(module) for module in traced(model, guide, iface)]
            verify(model, guide, iface, [loaded(b) for b in blobs], check)
        else:
            blobs = onnx_blobs(model, guide, iface, check)
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
        sheet = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(sheet, dict) and str(sheet.get("exported_by", "")).startswith(EXPORTED_BY)


def _write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    checkpoint.remove_stale(path)
    return checkpoint.write_atomically(path, lambda f: f.write(data))


__all__ = ["FORMATS", "Interface", "export", "export_checkpoint", "interface", "manifest"]
