"""A trained model applied to given data: what :class:`pyro_vae.run.Run` offers in Python
(``run.encode(x)``, ``decode``, ``reconstruct``, ``sample``, ``elbo``, ``log_likelihood``) and
what ``pyro-vae encode / decode / reconstruct / interpolate / sample`` use.

Given data are prepared exactly as the run's own were: shaped as its images (N, C, H, W) (an
(N, H, W) grey batch, an (N, H, W, C) NumPy batch or flat rows (N, C*H*W) are accepted),
uint8 levels or floats, and binarized once with the seed the run's test set used where the run
binarizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import data, evaluate
from .data.imagefiles import check_memory
from .registry import check_count


def as_images(x: Any, image_shape: tuple[int, ...], what: str = "x") -> Tensor:
    """``x`` (a tensor or NumPy array of one or more data) as stored images (n, C, H, W), or
    one line saying what shape and type it must have."""
    if not isinstance(x, Tensor | np.ndarray):
        raise ValueError(f"{what} must be a torch tensor or NumPy array; got {type(x).__name__}")
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    c, h, w = image_shape
    if t.dtype != torch.uint8 and not torch.is_floating_point(t):
        raise ValueError(f"{what} must hold uint8 levels or floats; got {t.dtype}")
    if t.dtype != torch.uint8 and t.dtype != torch.float32:
        t = t.float()  # float64 from NumPy, float16 / bfloat16 from a model's output
    n = t.shape[0] if t.dim() else 0
    shapes = {(c, h, w): t, (c * h * w,): t}
    if c == 1:
        shapes[(h, w)] = t
    if t.dim() == 4 and tuple(t.shape[1:]) == (h, w, c) and c > 1:
        t = t.permute(0, 3, 1, 2)  # channels last, as image libraries and NumPy give them
    elif tuple(t.shape[1:]) not in shapes:
        raise ValueError(
            f"{what} has shape {tuple(t.shape)}; this model reads data shaped (N, {c}, {h}, {w})"
            + (f", (N, {h}, {w})" if c == 1 else f", (N, {h}, {w}, {c})")
            + f" or (N, {c * h * w})"
        )
    if n == 0:
        raise ValueError(f"{what} is empty (0 data): give at least one datum")
    t = t.reshape(n, c, h, w).contiguous()
    if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} holds NaN or inf values: drop or repair those data")
    return t


class Applied:
    """Methods of a trained run on given data (mixed into :class:`pyro_vae.run.Run`, which
    supplies ``model``, ``guide``, ``kind``, ``model_config``, ``train_config``, ``binarize``
    and ``trainer``)."""

    model: Any
    guide: Any
    kind: Any
    model_config: Any
    train_config: Any
    binarize: str
    trainer: Any

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.model_config.image_shape)  # type: ignore[return-value]

    def prepare(self, x: Any) -> Tensor:
        """Images as the run's test data were: shaped, on the run's device, binarized once
        with the seed of the run's test set where the run binarizes."""
        images = as_images(x, self.image_shape).to(self.trainer.device)
        if self.binarize != "none" and torch.is_floating_point(images):
            lo, hi = images.min().item(), images.max().item()
            if lo < 0 or hi > 1:
                raise ValueError(
                    f"x holds floats from {lo:g} to {hi:g}; this run binarizes intensities in "
                    "[0, 1]: divide levels 0..255 by 255 (or pass them as uint8)"
                )
        if self.binarize != "none":
            images = data.binarize_once(images, self.train_config.seed + 1)
        return images

    def _labels(self, labels: Any) -> Tensor | None:
        if labels is None:
            return None
        return torch.as_tensor(labels)

    def _view(self, x: Any, labels: Any = None) -> evaluate.Data:
        return self.kind.data_view(self, self.prepare(x), self._labels(labels))

    @torch.no_grad()
    def encode(self, x: Any, labels: Any = None) -> Tensor | dict[str, Tensor]:
        """The guide's point summary of each datum of ``x`` (the posterior mean of q(z|x) for
        the Normal guides): a tensor (n, z_dim), or a dict of sites where the model has
        several (hvae: z1, z2; m2: z and q(y|x)'s probabilities)."""
        codes = self.kind.encode(self, self._view(x, labels))
        return codes["z"] if list(codes) == ["z"] else codes

    @torch.no_grad()
    def decode(self, z: Tensor | dict[str, Tensor], labels: Any = None) -> Tensor:
        """E[x | z] for codes ``z`` (as :meth:`encode` gives them), shaped as the data
        (n, C, H, W); label-aware kinds take ``labels`` (class indices)."""
        codes = z if isinstance(z, dict) else {self.kind.code_site: z}
        device = self.trainer.device
        codes = {k: torch.as_tensor(v, dtype=torch.float32).to(device) for k, v in codes.items()}
        widths = self.code_widths()
        for k, v in codes.items():
            if v.dim() != 2 or not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"codes {k} must be a finite float array (n, dim); got {tuple(v.shape)}"
                )
            if len(v) == 0:
                raise ValueError(f"codes {k} are empty (0 rows): give at least one row")
            if k in widths and v.shape[1] != widths[k]:
                raise ValueError(
                    f"codes {k} have {v.shape[1]} dimensions; this model's {k} has {widths[k]}: "
                    "give codes written by pyro-vae encode of this run"
                )
        mean = self.kind.decode(self, codes, self._labels(labels))
        return mean.reshape(-1, *self.image_shape)

    @torch.no_grad()
    def reconstruct(self, x: Any, labels: Any = None) -> Tensor:
        """E[x | z] at the guide's point summary of z for each datum (n, C, H, W)."""
        codes = self.encode(x, labels)
        return self.decode(codes, labels)

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, labels: Any = None, seed: int | None = None
    ) -> Tensor:
        """E[x | z] for ``n`` draws z ~ p(z), the prior's scale times ``temperature``
        (label-aware kinds: given ``labels``, class indices, one or ``n``), (n, C, H, W)."""
        n = check_count(n, "n")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0; got {temperature}")
        check_memory(n * math.prod(self.image_shape) * 4 * 2, f"{n} draws", "ask for fewer")
        if seed is not None:
            torch.manual_seed(seed)
        draws = self.kind.sample(self, n, temperature, self._labels(labels))
        return draws["mean"].reshape(-1, *self.image_shape)

    def code_widths(self) -> dict[str, int]:
        """The width of each latent site's codes, as :meth:`encode` gives them (read from the
        guide's summary of one blank image, once)."""
        if getattr(self, "_code_widths", None) is None:
            blank = torch.zeros(1, *self.image_shape, dtype=torch.uint8)
            labels = torch.zeros(1, dtype=torch.long) if self.kind.needs_labels else None
            codes = self.kind.encode(self, self._view(blank, labels))
            self._code_widths = {k: v.shape[-1] for k, v in codes.items() if v.dim() == 2}
        return self._code_widths

    def elbo(self, x: Any, labels: Any = None) -> float:
        """The ELBO of ``x``, mean nats per datum (one draw of z per datum)."""
        return evaluate.elbo(self.model, self.guide, self._view(x, labels))

    def log_likelihood(self, x: Any, samples: int = 1000, labels: Any = None) -> Tensor:
        """Importance-sampled log p(x) of each datum of ``x`` (nats), with ``samples`` draws
        from the guide per datum."""
        samples = check_count(samples, "samples")
        view = self._view(x, labels)
        return evaluate.log_likelihood(self.model, self.guide, view, samples, progress=False)
