"""Plain ``nn.Module`` networks used by models and guides (no Pyro inside)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .data.imagefiles import available_memory
from .inputs import chw
from .registry import Options, Registry, option


# the encoder/decoder families a config can name (the kinds build them)
@dataclass
class ConvOptions(Options):
    """Options of the convolutional nets."""

    residual: bool = option(
        False, "conv: a residual block after each convolution level", group="model"
    )


NETS: Registry = Registry("net")
NETS.register("mlp", "mlp", "fully connected (default)")
NETS.register(
    "conv",
    "conv",
    "convolutional, for images (C, H, W): depth grows with the size",
    options=ConvOptions,
)

ACTIVATIONS: Registry = Registry("activation")
ACTIVATIONS.register("elu", nn.ELU)
ACTIVATIONS.register("softplus", nn.Softplus)
ACTIVATIONS.register("relu", nn.ReLU)
ACTIVATIONS.register("tanh", nn.Tanh)


def linear(w_in: int, w_out: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear(w_in, w_out)``, refused in one line before it is allocated where its weights,
    their gradients and Adam's two moments would not fit in the memory available (an MLP on
    large images: C*H*W inputs times the first hidden layer's width)."""
    need, free = w_in * w_out * 4 * 4, available_memory()
    if free is not None and need > free:
        raise ValueError(
            f"a layer of {w_in:,} x {w_out:,} weights needs {need / 2**30:,.1f} GiB of memory "
            f"with its gradients and Adam's moments, and {free / 2**30:,.1f} GiB are available: "
            "use a smaller --image-size, narrower --hidden layers, or --net conv"
        )
    return nn.Linear(w_in, w_out, bias=bias)


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS.choose(name)()


def hidden_layers(
    in_dim: int, hidden: Sequence[int], act: str = "elu", batch_norm: bool = False
) -> nn.Sequential:
    """``in_dim -> hidden...``, each layer affine (-> BatchNorm1d) -> activation."""
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise([in_dim, *hidden]):
        norm = [nn.BatchNorm1d(w_out)] if batch_norm else []
        layers += [linear(w_in, w_out), *norm, activation(act)]
    return nn.Sequential(*layers)


class MLP(nn.Sequential):
    """Fully connected net ``in_dim -> hidden... -> out_dim`` with no activation on the output.

    ``hidden=()`` gives a single affine map (the linear decoder of probabilistic PCA). With
    ``batch_norm``, each hidden layer is affine -> BatchNorm1d -> activation (batch statistics
    in training, running averages after ``.eval()``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        act: str = "elu",
        batch_norm: bool = False,
        centred: bool = False,
    ) -> None:
        layers = list(hidden_layers(in_dim, hidden, act, batch_norm))
        super().__init__(*layers, linear(([in_dim, *hidden])[-1], out_dim))
        self.in_dim, self.out_dim = in_dim, out_dim
        self.centred = centred  # reads 2x - 1 for data x in [0, 1]

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(2 * x - 1 if self.centred else x)


class ConditionalMLP(nn.Module):
    """MLP on the concatenation of several inputs, ``sum(in_dims) -> hidden... -> out_dim``,
    that broadcasts its inputs' batch dimensions against each other.

    The first layer is one affine map per input, summed (the same function as one affine map
    of the concatenation), so ``f(x, y)`` with ``x`` of shape (batch, x_dim) and a label ``y``
    of shape (10, 1, n_classes), as Pyro's parallel enumeration supplies it, computes ``x``'s
    part once instead of copying ``x`` ten times.
    """

    def __init__(
        self, in_dims: Sequence[int], hidden: Sequence[int], out_dim: int, act: str = "elu"
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("ConditionalMLP needs at least one hidden layer")
        self.inputs = nn.ModuleList(
            linear(d, hidden[0], bias=i == 0) for i, d in enumerate(in_dims)
        )
        self.act = activation(act)
        self.rest = MLP(hidden[0], hidden[1:], out_dim, act)
        self.in_dims, self.out_dim = tuple(in_dims), out_dim

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(inputs)}")
        h = sum(layer(x) for layer, x in zip(self.inputs, inputs, strict=True))
        return self.rest(self.act(h))


# channels of the convolutional nets at each halving of the image sides (then 256)
CONV_CHANNELS = (32, 64, 128, 256)


def conv_levels(image_shape: Sequence[int]) -> list[tuple[int, int]]:
    """The (H, W) of each level of the convolutional nets: the image, then each stride-2
    halving while both sides are at least 8 (at least one halving): 28 -> 14 -> 7,
    32 -> 16 -> 8 -> 4, 64 -> ... -> 4, 109 x 89 -> 54 x 44 -> ... -> 6 x 5."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 2:
        raise ValueError(
            f"the convolutional nets need images (C, H, W) with sides of at least 2; got "
            f"{shape}: use --net mlp"
        )
    h, w = shape[-2:]
    levels = [(h, w)]
    while len(levels) == 1 or min(h, w) >= 8:
        h, w = h // 2, w // 2
        levels.append((h, w))
    return levels


def _channels(level: int) -> int:
    return CONV_CHANNELS[min(level, len(CONV_CHANNELS) - 1)]


class ResidualBlock(nn.Module):
    """x + conv3x3(act(conv3x3(act(x)))), same channels and size."""

    def __init__(self, channels: int, act: str = "elu") -> None:
        super().__init__()
        self.body = nn.Sequential(
            activation(act),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation(act),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """Images (batch, C*H*W) -> (batch, out_dim): stride-2 4x4 convolutions halving the sides
    (see :func:`conv_levels`; 2 for 28 x 28, 3 for 32 x 32, 4 for 64 x 64) with 32, 64, 128,
    256 channels, each followed by a residual block with ``residual``; then a hidden layer of
    ``hidden`` units. For 28 x 28 grey images this is the two-layer net of the earlier
    releases (same parameter names). ``centred``: it reads 2x - 1 (data in [-1, 1])."""

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int,
        hidden: int = 256,
        act: str = "elu",
        residual: bool = False,
        centred: bool = False,
    ) -> None:
        super().__init__()
        self.image_shape = chw(image_shape)
        self.centred = centred  # reads 2x - 1 for data x in [0, 1]
        levels = conv_levels(self.image_shape)
        layers: list[nn.Module] = []
        c_in = self.image_shape[0]
        for i in range(1, len(levels)):
            c_out = _channels(i - 1)
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), activation(act)]
            if residual:
                layers.append(ResidualBlock(c_out, act))
            c_in = c_out
        h, w = levels[-1]
        layers += [
            nn.Flatten(),
            linear(c_in * h * w, hidden),
            activation(act),
            linear(hidden, out_dim),
        ]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-1]
        images = x.reshape(-1, *self.image_shape)
        y = self.net(2 * images - 1 if self.centred else images)
        return y.reshape(*batch, self.out_dim)


class ConvDecoder(nn.Module):
    """Codes (batch, z_dim) -> (batch, params_per_pixel * C*H*W): a hidden layer, then
    stride-2 4x4 transposed convolutions mirroring :class:`ConvEncoder` up to
    ``params_per_pixel * C`` output channels. The output is channel-major: all of the first
    parameter's C channels (in the data's (C, H, W) order), then the second's, as the
    likelihoods split it."""

    def __init__(
        self,
        z_dim: int,
        image_shape: Sequence[int],
        params_per_pixel: int = 1,
        hidden: int = 256,
        act: str = "elu",
        residual: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = chw(image_shape)
        levels = conv_levels((c, h, w))
        self.out_dim = params_per_pixel * c * h * w
        top = len(levels) - 1
        c_top = _channels(top - 1)
        layers: list[nn.Module] = [
            linear(z_dim, hidden),
            activation(act),
            linear(hidden, c_top * levels[-1][0] * levels[-1][1]),
            activation(act),
            nn.Unflatten(1, (c_top, *levels[-1])),
        ]
        c_in = c_top
        for i in range(top, 0, -1):
            (h_in, w_in), (h_out, w_out) = levels[i], levels[i - 1]
            if residual:
                layers.append(ResidualBlock(c_in, act))
            c_out = _channels(i - 2) if i > 1 else params_per_pixel * c
            pad = (h_out - 2 * h_in, w_out - 2 * w_in)  # 1 where the side was odd
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=pad))
            if i > 1:
                layers.append(activation(act))
            c_in = c_out
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        y = self.net(z.reshape(-1, z.shape[-1]))
        return y.reshape(*batch, self.out_dim)
