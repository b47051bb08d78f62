"""The Python API: ``pyro_vae.fit(data, **options) -> Run`` and ``pyro_vae.load(folder)``.

``fit`` trains on data given from Python (a tensor, a NumPy array, a torch ``Dataset``, a
``DataLoader`` or any iterable of batches; images or tabular rows) with the same options, by
the same names, as ``pyro-vae train``, through the same run (:func:`pyro_vae.run.train`), and
writes the same run folder. ``load`` restores a run folder or checkpoint without its data.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from . import data
from .config import ModelConfig, TrainConfig
from .run import Run, train
from .run import load as load_run


def options_to_configs(options: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """``ModelConfig`` and ``TrainConfig`` from options named as the CLI's (``z_dim``,
    ``epochs``, ...; ``particles`` for ``num_particles``); an unknown name is one line with
    the closest known ones."""
    model_names = {f.name for f in fields(ModelConfig) if f.metadata.get("cli", True)}
    train_names = {f.name for f in fields(TrainConfig) if f.metadata.get("cli", True)}
    aliases = {"particles": "num_particles"}
    model_kw: dict[str, Any] = {}
    train_kw: dict[str, Any] = {}
    for name, value in options.items():
        key = aliases.get(name, name)
        value = tuple(value) if isinstance(value, list) else value
        if key in model_names:
            model_kw[key] = value
        elif key in train_names:
            train_kw[key] = value
        else:
            known = sorted(model_names | train_names)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"choose from {known}"
            raise ValueError(f"unknown option {name!r}: {hint}")
    return ModelConfig(**model_kw), TrainConfig(**train_kw)


def as_dataset(x: Any, labels: Any = None, seed: int = 0) -> tuple[data.Dataset, dict[str, Any]]:
    """A :class:`~pyro_vae.data.Dataset` of data given from Python, a seeded 10% held out for
    testing, and the defaults their type suggests: images (uint8 levels, or floats in [0, 1])
    keep the CLI's defaults (Bernoulli, binarized per batch), colour 8-bit images get the
    discretized logistic; real-valued rows (any other floats, shape (N, D)) a Normal
    likelihood with a learned scale and no binarization."""
    collected = data.collect(x, "the data")
    if isinstance(collected, data.SemiSupervised):
        raise ValueError("pyro_vae.fit takes images or rows (and labels), not SemiSupervised")
    if isinstance(collected, tuple):
        if len(collected) != 2:
            raise ValueError("batches must be x or (x, y): labels as class indices")
        collected, labels = collected
    images = collected
    if images.dim() < 2 or len(images) < 2:
        raise ValueError(
            f"the data must hold at least 2 data (rows, or images); got shape {tuple(images.shape)}"
        )
    if images.dtype != torch.uint8 and not torch.is_floating_point(images):
        raise ValueError(f"the data must be uint8 levels or floats; got {images.dtype}")
    images = images.float() if images.dtype == torch.float64 else images
    if torch.is_floating_point(images) and not bool(torch.isfinite(images).all()):
        raise ValueError("the data hold NaN or inf values: drop or repair those data")
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1).long()
        if len(labels) != len(images) or (len(labels) and int(labels.min()) < 0):
            raise ValueError(f"labels must be {len(images)} class indices >= 0, one per datum")
    real_rows = (
        images.dim() == 2
        and torch.is_floating_point(images)
        and not bool(((images >= 0) & (images <= 1)).all())
    )
    if images.dim() == 2:
        images = images.reshape(len(images), 1, 1, -1)  # rows: a 1 x D "image" per datum
    elif images.dim() == 3:
        images = images[:, None]
    elif images.dim() != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W); got {tuple(images.shape)}")
    defaults: dict[str, Any] = {}
    if real_rows:
        defaults = {"likelihood": "normal", "binarize": "none"}
        what = (
            f"{len(images)} rows of {images.shape[-1]} real values: a Normal likelihood with a "
            "learned scale, no binarization (rows are used as given: standardize them first "
            "if their columns differ in scale)"
        )
    elif images.dtype == torch.uint8 and images.shape[1] == 3:
        defaults = {"likelihood": "logistic256", "binarize": "none"}
        what = f"{len(images)} colour images of 8 bits: the discretized logistic over 256 levels"
    else:
        what = f"{len(images)} data in [0, 1] of shape {tuple(images.shape[1:])}: Bernoulli"
    train_idx, test_idx = data.split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    ds = data.labelled(
        data.IN_MEMORY,
        "given from Python",
        images[train_idx],
        images[test_idx],
        pick(labels, train_idx),
        pick(labels, test_idx),
    )
    defaults["_what"] = what
    return ds, defaults


def fit(
    x: Any,
    labels: Any = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Run:
    """Train a VAE on data given from Python and return the trained :class:`Run`.

    ``x``: a tensor or NumPy array of images (N, C, H, W) / (N, H, W) or of rows (N, D), a
    torch ``Dataset``, a ``DataLoader`` or an iterable of batches (tensors, or ``(x,)`` /
    ``(x, y)`` tuples); ``labels``: class indices (or the ``y`` of the batches). A seeded 10%
    is held out as the test set. ``options``: the names of ``pyro-vae train``'s options
    (``z_dim=8, hidden=(64,), epochs=5, likelihood="laplace", ...``); the data's type picks
    the likelihood and binarization where they are not given, and says which. ``out``: the
    run folder (default: a new temporary folder; :meth:`Run.save` copies it anywhere)."""
    seed = options.get("seed", 0)
    dataset, defaults = as_dataset(x, labels, seed)
    what = defaults.pop("_what")
    chosen = {k: v for k, v in defaults.items() if k not in options}
    print(
        f"pyro_vae.fit: {what}"
        + (
            f" ({', '.join(f'{k}={v}' for k, v in chosen.items())}; pass them to choose)"
            if chosen
            else ""
        ),
        file=sys.stderr,
    )
    model_config, train_config = options_to_configs({**chosen, **options})
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="pyro-vae-fit-"))
    run, _ = train(model_config, train_config, folder, progress=progress, dataset=dataset)
    return run


def load(path: str | os.PathLike, device: str = "auto", **kwargs: Any) -> Run:
    """A run restored from its folder or its ``checkpoint.pt`` (see :func:`pyro_vae.run.load`):
    model, guide and trainer state, its data where they are found (never for data given from
    Python)."""
    path = Path(path)
    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    return load_run(ckpt, device=device, **kwargs)


__all__ = ["as_dataset", "fit", "load", "options_to_configs"]
