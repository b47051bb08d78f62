"""Perceptual likelihood (DFC-VAE, Hou et al. 2017): the likelihood on a fixed feature
network's activations rather than on pixels.

The decoder emits one output per value and decodes x̃(z) = sigmoid(f(z)) shaped as the data's
(C, H, W). With Φ_l the activations of layer l of a frozen feature network,

    log p̃(x | z) = sum_l log N(Φ_l(x); Φ_l(x̃(z)), I),

a Gaussian on the features: reconstructions are asked to agree in what the network sees
(edges, strokes, parts) rather than pixel by pixel, which is what makes their samples less
blurry. It is a density of the features, not of x, so it is a pseudo-likelihood
(``normalised = False``): the run reports a pseudo-ELBO and no log p(x) or bits per dimension.

The feature network (``--perceptual-net``):

- ``auto`` (default): the data set's own classifier (:mod:`pyro_vae.quality.features`; digit
  classes, CIFAR-10's classes, CelebA's 40 attributes), trained once and cached, copied into the
  model before a new run trains (:meth:`Perceptual.on_data`); its layers are chosen with
  ``--perceptual-levels`` (1 = the first convolution level);
- a TorchScript file, or ``package.module:factory`` (built with ``image_shape`` if it names
  it): a module mapping images (n, C, H, W) in [0, 1] to a tensor or a list of tensors, one per
  layer.

Its weights are frozen and saved with the model, so the run's checkpoint holds everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..inputs import chw
from ..registry import Options, _import, construct, option
from . import LIKELIHOODS, DecodedImageDistribution

LOG_2PI = math.log(2 * math.pi)


@dataclass
class PerceptualOptions(Options):
    """Options of the perceptual likelihood (``--likelihood perceptual``)."""

    perceptual_net: str = option(
        "auto",
        "perceptual: feature network: auto (a classifier of the training data, trained once "
        "and cached), a TorchScript file, or package.module:factory",
        group="model",
    )
    perceptual_levels: tuple[int, ...] = option(
        (1, 2),
        "perceptual: levels of the auto network whose activations are matched (1 = the first "
        "convolution level; one past the last: its dense features)",
        group="model",
    )

    def validate(self) -> None:
        levels = tuple(self.perceptual_levels)
        if not levels or any(isinstance(v, bool) or int(v) != v or v < 1 for v in levels):
            raise ValueError(
                f"perceptual_levels must be one or more whole numbers >= 1 (1 = the first "
                f"convolution level); got {levels}"
            )
        if len(set(levels)) != len(levels):
            raise ValueError(f"perceptual_levels must not repeat a level; got {levels}")
        if not isinstance(self.perceptual_net, str) or not self.perceptual_net:
            raise ValueError(
                "perceptual_net must be auto, a TorchScript file or package.module:factory; "
                f"got {self.perceptual_net!r}"
            )


class PerceptualDistribution(DecodedImageDistribution):
    """exp(sum_l log N(Φ_l(x); Φ_l(sigmoid(logits)), I)) over one image x in [0, 1]^D. Not
    normalised over x, so ``sample()`` returns the decoded image, as does ``mean``."""

    def __init__(
        self,
        logits: Tensor,
        layers: Callable[[Tensor], list[Tensor]],
        image_shape: tuple[int, int, int],
        validate_args: bool | None = False,
    ) -> None:
        self.layers, self.image_shape = layers, image_shape
        super().__init__(logits, validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        decoded, x = self.images(value, self.image_shape)
        total = decoded.new_zeros(decoded.shape[0])
        for seen, made in zip(self.layers(x), self.layers(decoded), strict=True):
            d = (seen - made).flatten(1)
            total = total - 0.5 * (d.square().sum(1) + d.shape[1] * LOG_2PI)
        return total.reshape(self.batch_of(value))


class Perceptual(nn.Module):
    """log p̃(x|z) = sum_l log N(Φ_l(x); Φ_l(sigmoid(f(z))), I) on a frozen feature network
    Φ (see the module's text); one decoder output per value.

    Args:
        image_shape: the data's (C, H, W) or (H, W); flat data are refused.
        perceptual_net: ``auto``, a TorchScript file, or ``package.module:factory``.
        perceptual_levels: the layers of the ``auto`` network that are matched.
    """

    normalised = False
    data_hint = "the perceptual likelihood compares images with values in [0, 1]"

    def __init__(
        self,
        image_shape: Sequence[int] | None = None,
        perceptual_net: str = "auto",
        perceptual_levels: tuple[int, ...] = (1, 2),
    ) -> None:
        super().__init__()
        shape = tuple(image_shape or ())
        if len(shape) not in (2, 3):
            raise ValueError(
                f"the perceptual likelihood compares images and these data are flat rows "
                f"(shape {shape or None}): give images, (C, H, W) or (H, W), or choose another "
                "--likelihood"
            )
        PerceptualOptions(perceptual_net, tuple(perceptual_levels)).validate()
        self.image_shape = chw(shape)
        self.spec, self.levels = perceptual_net, tuple(int(v) for v in perceptual_levels)
        self.net = self._build(perceptual_net)
        for p in self.net.parameters():  # (ScriptModules have no requires_grad_)
            p.requires_grad_(False)
        self.net.eval()
        self.feature_info: dict[str, Any] = {}

    def _build(self, spec: str) -> nn.Module:
        if spec == "auto":
            from ..quality.features import FeatureNet

            net = FeatureNet(self.image_shape, outputs=1)
            if max(self.levels) > net.levels + 1:
                raise ValueError(
                    f"perceptual_levels {self.levels}: {self.image_shape} images give the "
                    f"feature network {net.levels} convolution levels (and level "
                    f"{net.levels + 1}, its dense features): choose levels from 1 to "
                    f"{net.levels + 1}"
                )
            return net
        if ":" in spec and not Path(spec).is_file():
            return construct(_import(spec, "feature network"), image_shape=self.image_shape)
        try:
            return torch.jit.load(spec, map_location="cpu")
        except Exception as e:
            raise ValueError(
                f"--perceptual-net {spec}: not a TorchScript file ({type(e).__name__}); give "
                "auto, a file saved with torch.jit.save(torch.jit.script(net), PATH), or "
                "package.module:factory"
            ) from None

    def train(self, mode: bool = True) -> Perceptual:
        super().train(mode)
        self.net.eval()  # frozen: its batch norms (if any) keep their statistics
        return self

    def on_data(self, dataset: Any) -> None:
        """Before a new run trains: copy the ``auto`` network trained on ``dataset`` (from
        the cache, or trained now) into the model."""
        if self.spec != "auto":
            return
        from ..data import short_name
        from ..quality import features

        trained, info, path = features.trained(dataset)
        device = next(self.net.parameters()).device
        # all but the classifier's head, which the likelihood has no use for
        body = {k: v for k, v in trained.state_dict().items() if not k.startswith("head.")}
        missing, unexpected = self.net.load_state_dict(body, strict=False)
        assert not unexpected and all(k.startswith("head.") for k in missing)
        self.net.to(device)
        self.feature_info = {"network": str(path), **info}
        name = short_name(dataset.name)
        print(
            f"perceptual likelihood: feature network of {name} ({info['task']}, test accuracy "
            f"{info['test_accuracy']:.4f})"
        )

    def layers(self, images: Tensor) -> list[Tensor]:
        if self.spec == "auto":
            return self.net.taps(images, self.levels)
        out = self.net(images)
        return list(out) if isinstance(out, list | tuple) else [out]

    def forward(self, out: Tensor) -> PerceptualDistribution:
        return PerceptualDistribution(out, self.layers, self.image_shape)


LIKELIHOODS.register(
    "perceptual",
    Perceptual,
    "DFC-VAE: Gaussian on a frozen feature network's activations (a pseudo-likelihood)",
    options=PerceptualOptions,
)
