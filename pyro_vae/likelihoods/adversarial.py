"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"):
a likelihood on a discriminator's features, and the adversarial game that trains it.

The generative story is the VAE's, with the likelihood moved from the pixels to the l-th layer
of a discriminator Dis::

    z ~ p(z)
    x̃ = sigmoid(f_theta(z))                          # the decoded image, in [0, 1]
    Dis_l(x) ~ N(Dis_l(x̃), I)                         # p(Dis_l(x) | z): site "x"

so log p(x | z) is read as the Gaussian log-density of the features ``Dis_l(x)``: a density of
features, not of x (``normalised = False``: no log p(x) or bits/dim are reported for it). Any
prior, guide and kind can use it (``--likelihood vaegan``). Dis itself is trained by the
adversarial game, which :class:`VAEGAN` brings as an *adversary* of the trainer
(:class:`pyro_vae.adversary.Adversary`): beside every SVI step, the decoder also lowers the
non-saturating GAN term -log D(x̃) of reconstructions and of prior samples, and Dis takes a step
of its own optimizer on telling real data from both (Larsen's Algorithm 1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import Tensor, nn

from ..inputs import chw
from ..nets import CONV_CHANNELS, conv_levels, linear
from ..registry import Options, option
from . import LIKELIHOODS, DecodedImageDistribution

# the flat-data discriminator's hidden widths (its feature layers 1 and 2)
MLP_WIDTHS = (512, 256)
HEAD_WIDTH = 256  # the conv discriminator's dense layer before its logit
SLOPE = 0.2  # LeakyReLU's negative slope (DCGAN's)
LOG_2PI = math.log(2 * math.pi)
# the default feature layer and γ: on CelebA 64 x 64, γ = 0.01 with the last of 4 layers made
# the decoder fool the discriminator with saturated noise within 3 epochs; γ = 1 with layer 2
# and the discriminator's layer normalisation gave FD 382 against the VAE's 756 after 3 epochs
# (docs/benchmarks.md, issue 23)
DEFAULT_LAYER = 2


def _is_image(image_shape: Sequence[int] | None) -> bool:
    return image_shape is not None and len(tuple(image_shape)) in (2, 3)


def discriminator_layers(image_shape: Sequence[int] | None) -> int:
    """How many feature layers the discriminator has: one per convolution level of the
    image (:func:`pyro_vae.nets.conv_levels`; 2 for 28 x 28, 4 for 64 x 64), 2 for flat data."""
    if _is_image(image_shape):
        return len(conv_levels(chw(image_shape))) - 1  # type: ignore[arg-type]
    return len(MLP_WIDTHS)


@dataclass
class VAEGANOptions(Options):
    """Options of the VAE-GAN likelihood."""

    vaegan_gamma: float = option(
        1.0,
        "vaegan: γ, the weight of the feature likelihood against the GAN term in the decoder's "
        "objective (Larsen et al.'s γ L_llike + L_GAN; applied as 1/γ on the GAN term)",
        group="model",
    )
    vaegan_lr: float = option(
        3e-4,
        "vaegan: the discriminator's Adam learning rate (betas 0.5, 0.999)",
        group="model",
    )
    vaegan_layer: int | None = option(
        None,
        "vaegan: the discriminator layer whose features the likelihood compares (1 = the "
        "first stride-2 convolution level; default: the second, or the last if fewer)",
        group="model",
        metavar="L",
    )

    def validate(self) -> None:
        shape = getattr(self, "image_shape", None)  # of the config: None until the data are read
        check(self.vaegan_gamma, self.vaegan_lr, self.vaegan_layer, shape)


def check(
    gamma: float, lr: float, layer: int | None, image_shape: Any, known: bool = False
) -> None:
    """The one check of the options (``known``: the data's shape is final, flat data too)."""
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"vaegan_gamma must be a finite number > 0 (e.g. 1.0); got {gamma}")
    if not (math.isfinite(lr) and 0 < lr <= 1):
        raise ValueError(f"vaegan_lr must lie in (0, 1] (e.g. 3e-4); got {lr}")
    if layer is None:
        return
    most = discriminator_layers(image_shape) if known or image_shape is not None else None
    whole = isinstance(layer, int) and not isinstance(layer, bool)
    if not whole or layer < 1 or (most is not None and layer > most):
        span = f"from 1 to {most}" if most else ">= 1"
        raise ValueError(
            f"vaegan_layer must be a whole number {span} (the discriminator's feature layers for "
            f"this data), or left out for the last; got {layer!r}"
        )


class Discriminator(nn.Module):
    """Dis: data rows (..., x_dim) in [0, 1] -> a logit of "real" (...,).

    For images (``image_shape`` (C, H, W) or (H, W)) it mirrors :class:`~pyro_vae.nets.
    ConvEncoder`'s levels: stride-2 4x4 convolutions with 32, 64, 128, 256 channels, each
    followed by a layer normalisation of the datum's whole feature map (no learned scale) and a
    LeakyReLU, then a dense layer of 256 units and the logit; for flat data two dense layers of
    512 and 256 units, each layer-normalised. Its feature layers (:meth:`features`) are the
    outputs of these levels, 1 to :attr:`layers`.

    The normalisation is per datum (not batch norm: every datum's features and logit depend on
    that datum only, as a likelihood's must), and it is what lets the features serve as a
    likelihood: without it the discriminator, trained on the GAN loss alone, was free to shrink
    its features until N(Dis_l(x̃), I) hardly told one face from another, and the encoder's
    posterior collapsed (reconstructions that did not follow their inputs; docs/benchmarks.md,
    issue 23).
    """

    def __init__(self, x_dim: int, image_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.image_shape = chw(image_shape) if _is_image(image_shape) else None  # type: ignore[arg-type]
        blocks: list[nn.Module] = []
        if self.image_shape is not None:
            levels = conv_levels(self.image_shape)
            c_in = self.image_shape[0]
            for i in range(1, len(levels)):
                c_out = CONV_CHANNELS[min(i - 1, len(CONV_CHANNELS) - 1)]
                conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
                norm = nn.GroupNorm(1, c_out, affine=False)
                blocks.append(nn.Sequential(conv, norm, nn.LeakyReLU(SLOPE)))
                c_in = c_out
            h, w = levels[-1]
            head: list[nn.Module] = [
                nn.Flatten(),
                linear(c_in * h * w, HEAD_WIDTH),
                nn.LeakyReLU(SLOPE),
                linear(HEAD_WIDTH, 1),
            ]
        else:
            for w_in, w_out in itertools.pairwise([x_dim, *MLP_WIDTHS]):
                norm = nn.LayerNorm(w_out, elementwise_affine=False)
                blocks.append(nn.Sequential(linear(w_in, w_out), norm, nn.LeakyReLU(SLOPE)))
            head = [linear(MLP_WIDTHS[-1], 1)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(*head)
        self.x_dim, self.layers = x_dim, len(blocks)

    def _trunk(self, x: Tensor, layer: int) -> Tensor:
        h = x.reshape(-1, *self.image_shape) if self.image_shape else x.reshape(-1, self.x_dim)
        for block in self.blocks[:layer]:
            h = block(h)
        return h

    def features(self, x: Tensor, layer: int) -> Tensor:
        """Dis_layer(x): the flattened output of feature layer ``layer``, shape (..., F)."""
        return self._trunk(x, layer).reshape(*x.shape[:-1], -1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self._trunk(x, self.layers)).reshape(x.shape[:-1])


class FeatureLikelihoodDistribution(DecodedImageDistribution):
    """p(Dis_l(x) | z) = N(Dis_l(x); Dis_l(x̃), I) for data x in [0, 1], x̃ = sigmoid(logits)
    (batch shape: the logits' leading dimensions; event: one datum). ``log_prob(x)`` is that
    Gaussian log-density of the features, summed over them: a density of features, not a
    normalised density of x. ``mean`` is x̃, and ``sample()`` returns x̃ too (the model's
    image; nothing is drawn)."""

    def __init__(
        self,
        logits: Tensor,
        discriminator: Discriminator,
        layer: int,
        validate_args: bool | None = False,
    ) -> None:
        self.discriminator, self.layer = discriminator, layer
        super().__init__(logits, validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        real = self.discriminator.features(value, self.layer)
        fake = self.discriminator.features(self.mean, self.layer)
        return -0.5 * (real - fake).pow(2).sum(-1) - 0.5 * real.shape[-1] * LOG_2PI


class _DetachLatents(Messenger):
    """Every latent draw reaches the rest of the program detached: a prior draw z_p ~ p(z)
    carries no gradient into the prior's parameters, only x̃(z_p) into the decoder's."""

    def _postprocess_message(self, msg: Any) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and isinstance(msg["value"], Tensor):
            msg["value"] = msg["value"].detach()


class VAEGAN(nn.Module):
    """p(x | z) on a discriminator's features (Larsen et al. 2016), and the discriminator's
    adversarial game as an adversary of :class:`pyro_vae.train.Trainer`.

    As a likelihood: the decoder emits one output per value, x̃ = sigmoid(out), and
    ``forward(out)`` is :class:`FeatureLikelihoodDistribution` on ``discriminator``'s layer
    ``vaegan_layer`` (default: its second, or its last if it has fewer). As an adversary (what
    the trainer finds among the model's modules), per batch:

    - :meth:`generator_loss`: x̃(z_q) with z_q ~ q(z | x) drawn without gradient (the encoder
      takes no GAN gradient) and x̃(z_p) with z_p ~ p(z), and the non-saturating term
      sum_batch [-log D(x̃(z_q)) - log D(x̃(z_p))] / γ, which reaches only the decoder;
    - :meth:`discriminator_loss`: Larsen's L_GAN, the binary cross-entropy of D on the real
      data (label 1) and on the same reconstructions and prior images (label 0, detached),
      per datum; the trainer steps D's own Adam (``vaegan_lr``, betas (0.5, 0.999)) on it.

    The paper weighs the decoder's objective as γ L_llike + L_GAN; here the GAN term is
    divided by γ instead: the decoder's gradient is then (1/γ) times the paper's, and Adam's
    step is invariant to a constant rescaling of a parameter's gradient (up to its eps), so the
    decoder moves as in the paper, while the encoder's objective stays the plain (feature-)
    ELBO, the one loss Pyro computes for every parameter. γ = 1 and layer 2 by default (the
    paper leaves γ to tune): with γ = 0.01, which would bring the two GAN terms per datum to the
    size of the thousands of summed feature terms, the GAN term took over on CelebA and the
    decoder fooled the discriminator with saturated noise (see :data:`DEFAULT_LAYER`).

    The discriminator's parameters are trained by that step only: the trainer keeps them out
    of the SVI optimizer and their gradients off outside it.
    """

    normalised = False
    data_hint = "vaegan needs grey levels in [0, 1]: scale 8-bit images by 1/255 (--binarize none)"
    adversary_betas: ClassVar[tuple[float, float]] = (0.5, 0.999)

    def __init__(
        self,
        x_dim: int,
        image_shape: Sequence[int] | None = None,
        vaegan_layer: int | None = None,
        vaegan_gamma: float = 1.0,
        vaegan_lr: float = 3e-4,
    ) -> None:
        super().__init__()
        check(vaegan_gamma, vaegan_lr, vaegan_layer, image_shape, known=True)
        self.discriminator = Discriminator(x_dim, image_shape)
        layers = self.discriminator.layers
        self.layer = min(DEFAULT_LAYER, layers) if vaegan_layer is None else vaegan_layer
        self.gamma, self.adversary_lr = float(vaegan_gamma), float(vaegan_lr)
        # the images generator_loss drew, for discriminator_loss on the same batch (one step)
        self._images: tuple[Tensor, Tensor, Tensor] | None = None

    def forward(self, out: Tensor) -> FeatureLikelihoodDistribution:
        return FeatureLikelihoodDistribution(out, self.discriminator, self.layer)

    # -- the adversary (pyro_vae.adversary.Adversary) -----------------------------------------
    def adversary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def generator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor:
        real, recon, prior = self.draw(model, guide, args)
        self._images = (real.detach(), recon.detach(), prior.detach())
        logits = self.discriminator(torch.cat([recon, prior]))
        return F.softplus(-logits).sum() / self.gamma  # -log sigmoid(logit) = -log D(x̃)

    def discriminator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor:
        images, self._images = self._images, None
        if images is None:  # not after generator_loss on this batch: draw them now
            with torch.no_grad():
                images = self.draw(model, guide, args)
        real, recon, prior = images
        n = real.shape[0]
        logits = self.discriminator(torch.cat([real, recon, prior]))
        return (F.softplus(-logits[:n]).sum() + F.softplus(logits[n:]).sum()) / n

    @staticmethod
    def draw(model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """(x, x̃(z_q), x̃(z_p)) for a batch: the data at the model's observed site "x", its
        reconstructions from z_q ~ q(z | x) (drawn without gradient) and as many images from
        z_p ~ p(z) (the model with its observation removed, its draws detached); the images
        carry the decoder's gradient."""
        with torch.no_grad():
            posterior = poutine.trace(guide).get_trace(*args)
        replayed = poutine.trace(poutine.replay(model, trace=posterior)).get_trace(*args)
        generated = poutine.trace(_DetachLatents()(poutine.uncondition(model))).get_trace(*args)
        if "x" not in replayed.nodes or not replayed.nodes["x"]["is_observed"]:
            raise ValueError(
                "the vaegan likelihood's adversary reads the model's observed site 'x', and this "
                "model has none: use a model kind whose data site is 'x'"
            )
        site = replayed.nodes["x"]
        return site["value"], site["fn"].mean, generated.nodes["x"]["fn"].mean


LIKELIHOODS.register(
    "vaegan",
    VAEGAN,
    "VAE-GAN: Gaussian on a discriminator's features (Larsen et al. 2016), data in [0, 1]",
    options=VAEGANOptions,
)
