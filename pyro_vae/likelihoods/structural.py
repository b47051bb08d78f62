"""Structural likelihood: MS-SSIM as a pseudo-likelihood (pythae's MSSSIM_VAE, PyTorch-VAE's
MSSIM VAE), not a normalised density of x.

The decoder emits one output per value; the decoded image is x̃(z) = sigmoid(f(z)) shaped as
the data's (C, H, W), and the "log-likelihood" of a datum is

    log p̃(x | z) = -w D (1 - MS-SSIM(x̃(z), x)),     D = C H W values,

which is 0 for a perfect reconstruction and falls as the two images differ in local means,
contrasts and structure at several scales (Wang, Simoncelli & Bovik 2003). exp(log p̃) does
not integrate to one over x, so the ELBO it gives is a pseudo-ELBO and no log p(x) or bits per
dimension are defined for it (the evaluation skips them and says why).

The single-scale SSIM and its contrast-structure term come from the maintained package
``pytorch-msssim``; only the choice of scales and window is made here (see
:func:`msssim_scales`), because its ``ms_ssim`` insists on sides over 160 pixels, whatever
the number of scales asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor, nn

from ..inputs import chw
from ..registry import Options, option
from . import LIKELIHOODS, DecodedImageDistribution

# Wang et al. 2003's weights of the five scales, finest first, and their Gaussian window
STANDARD_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
STANDARD_WINDOW = 11
SIGMA = 1.5
K = (0.01, 0.03)  # the SSIM stabilisers, as fractions of the data range (1)


def _sides(side: int, scales: int) -> list[int]:
    """The side at each scale: pytorch-msssim halves it by 2x2 average pooling, padding odd
    sides, so a side n becomes ceil(n / 2)."""
    out = [side]
    for _ in range(scales - 1):
        out.append(-(-out[-1] // 2))
    return out


def _fitting_scales(side: int, window: int) -> int:
    """The most scales (up to five) whose every image still holds the whole window."""
    return sum(s >= window for s in _sides(side, len(STANDARD_WEIGHTS)))


def msssim_scales(
    image_shape: Sequence[int], window: int | None = None
) -> tuple[int, tuple[float, ...]]:
    """(window, weights of the scales) for images of ``image_shape``.

    The standard MS-SSIM has five scales and an 11-pixel window (σ = 1.5), which needs sides of
    176 pixels. For smaller images the window (when not given) is the standard 11 pixels where
    that leaves at least three scales (sides of 44 or more: 64 x 64 gets 11 px, 3 scales), else
    the largest odd window that does (28 x 28 and 32 x 32 get 7 px, 3 scales; σ stays 1.5);
    then as many scales are used (at most five) as hold the whole window at their size, their
    standard weights renormalised to sum to one.
    """
    _, h, w = chw(image_shape)
    side = min(h, w)
    if window is None:
        window = next(
            (k for k in range(STANDARD_WINDOW, 2, -2) if _fitting_scales(side, k) >= 3), 3
        )
    if side < window:
        raise ValueError(
            f"the MS-SSIM window of {window} pixels does not fit {h} x {w} images: give an odd "
            f"--msssim-window of at most {side if side % 2 else side - 1} (3 or more), or leave "
            "it unset to choose it from the image size"
        )
    raw = STANDARD_WEIGHTS[: _fitting_scales(side, window)]
    return window, tuple(v / sum(raw) for v in raw)


def ms_ssim(x: Tensor, y: Tensor, window: int, weights: Sequence[float]) -> Tensor:
    """MS-SSIM of each pair of images (N, C, H, W) with values in [0, 1], averaged over the
    channels: shape (N,). pytorch-msssim's ``ms_ssim`` with ``len(weights)`` scales (the
    contrast-structure terms of the finer scales, the SSIM of the coarsest, each clipped at 0
    and raised to its weight), computed by its own single-scale ``_ssim``."""
    win = _fspecial_gauss_1d(window, SIGMA).repeat(x.shape[1], 1, 1, 1)
    terms = []
    for i in range(len(weights)):
        ssim, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False, K=K)
        if i < len(weights) - 1:
            terms.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim))
    powers = x.new_tensor(weights).view(-1, 1, 1)
    return torch.prod(torch.stack(terms) ** powers, dim=0).mean(1)


class MSSSIMDistribution(DecodedImageDistribution):
    """The pseudo-likelihood exp(-w (1 - MS-SSIM(sigmoid(logits), x))) over one image x in
    [0, 1]^D: ``log_prob`` is its log (0 at most, for x = x̃); not normalised, so
    ``sample()`` returns the decoded image x̃ itself, as does ``mean``."""

    def __init__(
        self,
        logits: Tensor,
        image_shape: tuple[int, int, int],
        weight: float,
        window: int,
        scale_weights: Sequence[float],
        validate_args: bool | None = False,
    ) -> None:
        self.image_shape, self.weight = image_shape, weight
        self.window, self.scale_weights = window, tuple(scale_weights)
        super().__init__(logits, validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        decoded, x = self.images(value, self.image_shape)
        similarity = ms_ssim(decoded, x, self.window, self.scale_weights)
        return -self.weight * (1 - similarity).reshape(self.batch_of(value))


@dataclass
class MSSSIMOptions(Options):
    """Options of the structural likelihood (``--likelihood msssim``)."""

    msssim_weight: float = option(
        1.0,
        "msssim: weight w per value of 1 - MS-SSIM (log p~(x|z) = -w D (1 - MS-SSIM), D values)",
        group="model",
    )
    msssim_window: int | None = option(
        None,
        "msssim: odd Gaussian window in pixels (default: 11 where it leaves 3 scales, else the "
        "largest that does)",
        group="model",
    )

    def validate(self) -> None:
        weight, window = self.msssim_weight, self.msssim_window
        if isinstance(weight, bool) or not (math.isfinite(weight) and weight > 0):
            raise ValueError(
                f"msssim_weight must be a finite number > 0 (nats per value of 1 - MS-SSIM; "
                f"default 1.0); got {weight}"
            )
        if window is not None and (type(window) is not int or window < 3 or window % 2 == 0):
            raise ValueError(
                f"msssim_window must be an odd whole number >= 3 (pixels), or left unset to "
                f"choose it from the image size; got {window}"
            )


class MSSSIM(nn.Module):
    """log p̃(x|z) = -w D (1 - MS-SSIM(sigmoid(f(z)), x)) for images x in [0, 1]^(C x H x W):
    a structural pseudo-likelihood, one decoder output per value (see the module's text).

    The weight is ``msssim_weight`` per value, w D in all: 1 - MS-SSIM lies in [0, 1], so a
    bare weight of 1 (pythae's MSSSIM_VAE at β = 1) lets the KL of a 50-d latent, tens of nats,
    outweigh any reconstruction and the posterior collapses. One nat per value instead gives
    the term the scale of a pixel likelihood (784 nats for MNIST against Bernoulli's ~100 at a
    blurry reconstruction; 12,288 for 64 x 64 x 3 faces, the order of PyTorch-VAE's MSSIM VAE,
    whose KL weight of batch / data size ~ 1/4000 amounts to the same), so a nat of KL must
    buy back 1/D of similarity. Measured on MNIST grey levels (MLP, 50-d latent, 3 epochs on
    10,000 images): KL 29.7 nats, 50 active units, test 1 - MS-SSIM 0.13; with a bare weight
    of 1, KL 0.2 nats, no active unit, 1 - MS-SSIM 0.56.

    Args:
        image_shape: the data's (C, H, W) or (H, W); flat data are refused.
        x_dim: values per datum, checked against ``image_shape`` when given.
        msssim_weight: w, nats per value of 1 - MS-SSIM.
        msssim_window: the Gaussian window's width (odd, pixels); None chooses it and the
            number of scales from the image size (:func:`msssim_scales`).
    """

    normalised = False
    data_hint = "MS-SSIM compares images with values in [0, 1]: scale 8-bit images by 1/255"

    def __init__(
        self,
        image_shape: Sequence[int] | None = None,
        x_dim: int | None = None,
        msssim_weight: float = 1.0,
        msssim_window: int | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(image_shape or ())
        if len(shape) not in (2, 3) or min(shape[-2:]) < 3:
            raise ValueError(
                f"the msssim likelihood compares images and these data are flat rows (shape "
                f"{shape or None}): give images, (C, H, W) or (H, W) with sides of 3 pixels or "
                "more, or choose another --likelihood"
            )
        MSSSIMOptions(msssim_weight, msssim_window).validate()
        self.image_shape = chw(shape)
        values = math.prod(self.image_shape)
        if x_dim is not None and x_dim != values:
            raise ValueError(
                f"x_dim {x_dim} is not the {values} values of {self.image_shape} images: give "
                "the data's own image_shape"
            )
        self.weight = msssim_weight * values
        self.window, self.scale_weights = msssim_scales(self.image_shape, msssim_window)

    def forward(self, out: Tensor) -> MSSSIMDistribution:
        return MSSSIMDistribution(
            out, self.image_shape, self.weight, self.window, self.scale_weights
        )

    def extra_repr(self) -> str:
        return (
            f"image_shape={self.image_shape}, weight={self.weight:g}, window={self.window}, "
            f"scales={len(self.scale_weights)}"
        )


LIKELIHOODS.register(
    "msssim",
    MSSSIM,
    "MS-SSIM pseudo-likelihood for images in [0, 1] (no log p(x))",
    options=MSSSIMOptions,
)
