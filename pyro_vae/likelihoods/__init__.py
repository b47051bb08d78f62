"""Likelihoods p(x|z): maps from the decoder's output to a distribution over one datum.

A likelihood is any callable ``f(out) -> Distribution`` where ``out`` is the decoder output of
shape ``(batch, x_dim * params_per_pixel)`` and the returned distribution has batch shape
``(batch,)`` and an event covering one datum. A user's own works as is::

    def laplace(out):
        return dist.Laplace(out, 0.1).to_event(1)

Optional attributes read by the model:

- ``params_per_pixel`` (default 1): how many decoder outputs each pixel needs;
- ``data_hint``: one line telling the user what data the likelihood expects, shown when data
  falls outside its support;
- ``levels``: 256 for a distribution over the 256 levels of 8-bit data (its log-likelihood is
  then in nats of a probability mass, and bits per dimension need no offset).

Likelihoods with parameters are ``nn.Module`` s, learned with the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from ..registry import Registry

LikelihoodLike = Callable[[Tensor], Distribution]


class Bernoulli(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(f(z)_i)), x_i in {0, 1}."""

    data_hint = (
        "Bernoulli needs 0/1 data: binarize grey levels (binarize='dynamic' or 'fixed') "
        "or use likelihoods.ContinuousBernoulli"
    )

    def forward(self, out: Tensor) -> Distribution:
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)


class ContinuousBernoulli(nn.Module):
    """p(x|z) = prod_i CB(x_i; sigmoid(f(z)_i)), grey levels x_i in [0, 1] (Loaiza-Ganem &
    Cunningham 2019: the properly normalised Bernoulli for continuous data)."""

    data_hint = "ContinuousBernoulli needs grey levels in [0, 1]: scale 8-bit images by 1/255"

    def forward(self, out: Tensor) -> Distribution:
        return dist.ContinuousBernoulli(logits=out, validate_args=False).to_event(1)


class Normal(nn.Module):
    """p(x|z) = N(x; f(z), sigma^2 I), with sigma fixed or (``scale=None``) one learned scalar.

    With a linear decoder and a standard Normal prior this is probabilistic PCA.
    """

    data_hint = "Normal needs finite real-valued data"

    def __init__(self, scale: float | None = None) -> None:
        super().__init__()
        if scale is None:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            if scale <= 0:
                raise ValueError(f"Normal likelihood scale must be positive; got {scale}")
            self.register_buffer("log_scale", torch.tensor(math.log(scale)))

    def forward(self, out: Tensor) -> Distribution:
        return dist.Normal(out, self.log_scale.exp(), validate_args=False).to_event(1)


class NormalPixelScale(nn.Module):
    """p(x|z) = prod_i N(x_i; mu_i(z), sigma_i(z)^2): the decoder predicts a mean and a scale
    per pixel (sigma = softplus(.) + 1e-3), so it emits two outputs per pixel."""

    params_per_pixel = 2
    data_hint = "Normal needs finite real-valued data"

    def forward(self, out: Tensor) -> Distribution:
        loc, raw = out.chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-3
        return dist.Normal(loc, scale, validate_args=False).to_event(1)


class NormalChannelScale(nn.Module):
    """p(x|z) = prod_i N(x_i; f(z)_i, sigma_c(i)^2): a learned scale per colour channel (one
    for grey images), shared by the channel's pixels."""

    data_hint = "Normal needs finite real-valued data"

    def __init__(self, image_shape: tuple[int, ...] | None = None, x_dim: int = 1) -> None:
        super().__init__()
        shape = tuple(image_shape or (x_dim,))
        channels = shape[0] if len(shape) == 3 else 1
        self.pixels = x_dim // channels
        self.log_scale = nn.Parameter(torch.full((channels,), -2.0))

    def forward(self, out: Tensor) -> Distribution:
        scale = self.log_scale.exp().repeat_interleave(self.pixels)
        return dist.Normal(out, scale, validate_args=False).to_event(1)


class Laplace(nn.Module):
    """p(x|z) = prod_i Laplace(x_i; f(z)_i, b), one learned scale b (an L1 reconstruction)."""

    data_hint = "Laplace needs finite real-valued data"

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, out: Tensor) -> Distribution:
        return dist.Laplace(out, self.log_scale.exp(), validate_args=False).to_event(1)


class _EightBit(constraints.Constraint):
    """Values k / 255 for k = 0, ..., 255 (8-bit grey levels scaled to [0, 1])."""

    is_discrete = True

    def check(self, value: Tensor) -> Tensor:
        k = value * 255
        return (value >= 0) & (value <= 1) & ((k - k.round()).abs() < 1e-3)

    def __repr__(self) -> str:
        return "EightBit()"


eight_bit = _EightBit()


MEAN_ELEMENTS = 1 << 26  # values held at once while a discretized logistic's mean is summed


class DiscretizedLogisticDistribution(TorchDistribution):
    """A logistic(loc, exp(log_scale)) discretized to the 256 levels k / 255, the outer bins
    taking the tails (Salimans et al. 2017, PixelCNN++; Kingma et al. 2016, IAF)."""

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "log_scale": constraints.real}
    support = eight_bit
    half_bin = 0.5 / 255

    def __init__(self, loc: Tensor, log_scale: Tensor, validate_args: bool | None = None):
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        new = self._get_checked_instance(DiscretizedLogisticDistribution, _instance)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        super(DiscretizedLogisticDistribution, new).__init__(batch_shape, validate_args=False)
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        inv_scale = torch.exp(-self.log_scale)
        centred = value - self.loc
        plus = inv_scale * (centred + self.half_bin)
        minus = inv_scale * (centred - self.half_bin)
        log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the bottom bin
        log_survival_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the top bin
        delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_scale * centred
        # where the bin's mass underflows, use the density at its centre times its width
        log_density_mid = mid - self.log_scale - 2 * F.softplus(mid) + math.log(2 * self.half_bin)
        log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_density_mid)
        return torch.where(
            value < 0.5 / 255,
            log_cdf_plus,
            torch.where(value > 1 - 0.5 / 255, log_survival_minus, log_mid),
        )

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            u = torch.rand(shape, device=self.loc.device).clamp(1e-5, 1 - 1e-5)
            y = self.loc.expand(shape) + self.log_scale.exp().expand(shape) * (
                u.log() - (-u).log1p()
            )
            return (y * 255).round().clamp(0, 255) / 255

    @property
    def mean(self) -> Tensor:
        # E[x] = (1/255) sum_{k=1}^{255} P(x >= k/255): one logistic CDF per interior bin edge,
        # the edges taken in groups so that at most MEAN_ELEMENTS values are held at once (all
        # 255 at once for 1,000 decoded 64 x 64 x 3 images would take 12 GB)
        edges = (torch.arange(1, 256, device=self.loc.device) - 0.5) / 255
        loc, inv_scale = self.loc[..., None], torch.exp(-self.log_scale)[..., None]
        total = torch.zeros_like(self.loc)
        for group in edges.split(max(1, MEAN_ELEMENTS // max(1, self.loc.numel()))):
            total = total + (1 - torch.sigmoid((group - loc) * inv_scale)).sum(-1)
        return total / 255


def from_centred(loc: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """A logistic's location and log-scale given for data in [-1, 1] (x' = 2x - 1), as the
    same logistic over x in [0, 1]: the 256 levels' masses are unchanged."""
    return (loc + 1) / 2, log_scale - math.log(2)


class DiscretizedLogistic(nn.Module):
    """p(x|z) = prod_i DiscretizedLogistic(x_i; mu_i(z), s_i(z)) over the 256 levels of 8-bit
    images scaled to [0, 1]: two decoder outputs per pixel (log s clamped at -7). With
    ``centred`` (``--centred``), the decoder's outputs are the location and log-scale for the
    data in [-1, 1] (:func:`from_centred`): the same masses, a start at mid-grey."""

    params_per_pixel = 2
    levels = 256
    data_hint = (
        "the discretized logistic needs 8-bit grey levels k/255 (use --binarize none on "
        "MNIST-like data; binarized data are levels 0 and 1 and fit too)"
    )

    def __init__(self, centred: bool = False) -> None:
        super().__init__()
        self.centred = centred

    def forward(self, out: Tensor) -> Distribution:
        loc, log_scale = out.chunk(2, dim=-1)
        log_scale = log_scale.clamp_min(-7.0)
        if self.centred:
            loc, log_scale = from_centred(loc, log_scale)
        return DiscretizedLogisticDistribution(loc, log_scale).to_event(1)


class DiscretizedLogisticMixtureDistribution(TorchDistribution):
    """A mixture of K discretized logistics per value over the 256 levels k / 255 (Salimans et
    al. 2017, without PixelCNN++'s coupling of the colour channels): parameters have a
    trailing axis of K components."""

    arg_constraints: ClassVar[dict] = {
        "logits": constraints.real,
        "loc": constraints.real,
        "log_scale": constraints.real,
    }
    support = eight_bit

    def __init__(
        self, logits: Tensor, loc: Tensor, log_scale: Tensor, validate_args: bool | None = None
    ):
        self.logits, self.loc, self.log_scale = torch.broadcast_tensors(logits, loc, log_scale)
        self.components = DiscretizedLogisticDistribution(self.loc, self.log_scale)
        super().__init__(self.loc.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        shape = (*batch_shape, self.loc.shape[-1])
        return DiscretizedLogisticMixtureDistribution(
            self.logits.expand(shape), self.loc.expand(shape), self.log_scale.expand(shape)
        )

    def log_prob(self, value: Tensor) -> Tensor:
        weights = torch.log_softmax(self.logits, -1)
        return torch.logsumexp(weights + self.components.log_prob(value[..., None]), -1)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            shape = self._extended_shape(torch.Size(sample_shape))
            k = dist.Categorical(logits=self.logits).sample(sample_shape)[..., None]
            picked = DiscretizedLogisticDistribution(
                self.loc.expand(*shape, -1).gather(-1, k).squeeze(-1),
                self.log_scale.expand(*shape, -1).gather(-1, k).squeeze(-1),
            )
            return picked.sample()

    @property
    def mean(self) -> Tensor:
        return (torch.softmax(self.logits, -1) * self.components.mean).sum(-1)


class DiscretizedLogisticMixture(nn.Module):
    """p(x|z) = prod_i sum_k pi_ik(z) DiscretizedLogistic(x_i; mu_ik(z), s_ik(z)) over the 256
    levels of 8-bit data: ``3 * components`` decoder outputs per value (weights, locations,
    log-scales clamped at -7), each colour channel its own mixture."""

    levels = 256
    data_hint = DiscretizedLogistic.data_hint

    def __init__(self, components: int = 5, centred: bool = False) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least 1 component; got {components}")
        self.components = components
        self.params_per_pixel = 3 * components
        self.centred = centred  # as DiscretizedLogistic's

    def forward(self, out: Tensor) -> Distribution:
        k = self.components
        # channel-major decoder output: parameter j of every value, for j = 0 .. 3k - 1
        params = out.unflatten(-1, (3 * k, -1)).movedim(-2, -1)
        logits, loc, log_scale = params.split(k, dim=-1)
        log_scale = log_scale.clamp_min(-7.0)
        if self.centred:
            loc, log_scale = from_centred(loc, log_scale)
        d = DiscretizedLogisticMixtureDistribution(logits, loc, log_scale)
        return d.to_event(1)


class DecodedImageDistribution(TorchDistribution):
    """Base of the pseudo-likelihoods over one image x in [0, 1]^D given the decoder's
    ``logits`` (MS-SSIM, perceptual, VAE-GAN): batch shape ``logits.shape[:-1]``, event (D,).
    They are not normalised over x (``normalised = False``), so they have no sampling
    distribution: ``mean`` and ``sample()`` are the decoded image x̃ = sigmoid(logits).
    Subclasses set their own attributes before calling this ``__init__`` (``expand`` passes
    them on) and define ``log_prob``."""

    arg_constraints: ClassVar[dict] = {"logits": constraints.real}
    support = constraints.independent(constraints.unit_interval, 1)
    normalised = False

    def __init__(self, logits: Tensor, validate_args: bool | None = False) -> None:
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.__dict__.update(self.__dict__)  # the subclass's settings
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        return new

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.mean.expand(self._extended_shape(torch.Size(sample_shape)))

    def images(self, value: Tensor, image_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
        """(x̃, x) broadcast against each other (particles, batch) and shaped as images
        (n, C, H, W); ``value.shape[:-1]`` broadcast with the batch shape is their batch."""
        shape = torch.broadcast_shapes(self.logits.shape, value.shape)
        decoded = self.mean.expand(shape).reshape(-1, *image_shape)
        return decoded, value.to(decoded.dtype).expand(shape).reshape(-1, *image_shape)

    def batch_of(self, value: Tensor) -> torch.Size:
        """The batch shape of ``log_prob(value)``."""
        return torch.broadcast_shapes(self.logits.shape, value.shape)[:-1]


def check_support(d: Distribution, x: Tensor, likelihood: object) -> None:
    """Raise a one-line ``ValueError`` if any datum of ``x`` lies outside ``d.support`` or is
    not finite (torch's ``real`` constraint lets infinities through)."""
    bad = ~d.support.check(x) | ~torch.isfinite(x).reshape(x.shape[0], -1).all(1)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        name = getattr(likelihood, "__name__", type(likelihood).__name__)
        hint = getattr(likelihood, "data_hint", "transform the data into the likelihood's support")
        x_min, x_max = float(x.nan_to_num().min()), float(x.nan_to_num().max())
        raise ValueError(
            f"{n_bad} of {bad.numel()} data points lie outside the support of the {name} "
            f"likelihood ({d.support}; data range [{x_min:g}, {x_max:g}], NaN: "
            f"{bool(x.isnan().any())}, infinite: {bool(x.isinf().any())}): {hint}"
        )


def accepts_grey_levels(likelihood: LikelihoodLike, x_dim: int) -> bool:
    """Whether the grey level 128/255 lies in the likelihood's support (False for Bernoulli-like
    ones; true for continuous and for 8-bit likelihoods)."""
    k = getattr(likelihood, "params_per_pixel", 1)
    with torch.no_grad():
        d = likelihood(torch.zeros(1, x_dim * k))
    return bool(d.support.check(torch.full((1, x_dim), 128 / 255)).all())


# Likelihoods by name for configs and the CLI (a user's own by import path,
# ``--likelihood mypkg.lik:Laplace``): built with those of ``x_dim`` and ``image_shape`` their
# constructor names.
LIKELIHOODS: Registry = Registry("likelihood", group="pyro_vae.likelihoods")
LIKELIHOODS.register("bernoulli", Bernoulli, "Bernoulli (logits), 0/1 data (default)")
LIKELIHOODS.register(
    "cbernoulli", ContinuousBernoulli, "ContinuousBernoulli, grey levels in [0, 1]"
)
LIKELIHOODS.register("normal", Normal, "Gaussian with one learned scale")
LIKELIHOODS.register("normal-pixel", NormalPixelScale, "Gaussian with a predicted scale per pixel")
LIKELIHOODS.register(
    "normal-channel", NormalChannelScale, "Gaussian with a learned scale per colour channel"
)
LIKELIHOODS.register("laplace", Laplace, "Laplace with a learned scale")
LIKELIHOODS.register("logistic256", DiscretizedLogistic, "discretized logistic over 256 levels")
LIKELIHOODS.register(
    "logistic-mixture",
    DiscretizedLogisticMixture,
    "mixture of 5 discretized logistics per value, 256 levels",
)

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "ContinuousBernoulli",
    "Normal",
    "accepts_grey_levels",
    "check_support",
]

# the likelihoods of their own modules register themselves
from . import adversarial, logcosh, perceptual, structural  # noqa: E402,F401
