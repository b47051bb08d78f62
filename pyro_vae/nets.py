"""Plain ``nn.Module`` networks used by models and guides (no Pyro inside)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

from .registry import Registry

# the encoder/decoder families a config can name (the kinds build them)
NETS: Registry = Registry("net")
NETS.register("mlp", "mlp", "fully connected (default)")
NETS.register("conv", "conv", "convolutional, for images with sides divisible by 4")

ACTIVATIONS: Registry = Registry("activation")
ACTIVATIONS.register("elu", nn.ELU)
ACTIVATIONS.register("softplus", nn.Softplus)
ACTIVATIONS.register("relu", nn.ReLU)
ACTIVATIONS.register("tanh", nn.Tanh)


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS.choose(name)()


class MLP(nn.Sequential):
    """Fully connected net ``in_dim -> hidden... -> out_dim`` with no activation on the output.

    ``hidden=()`` gives a single affine map (the linear decoder of probabilistic PCA).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "elu") -> None:
        widths = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for w_in, w_out in itertools.pairwise(widths):
            layers += [nn.Linear(w_in, w_out), activation(act)]
        layers.append(nn.Linear(widths[-1], out_dim))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)


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
            nn.Linear(d, hidden[0], bias=i == 0) for i, d in enumerate(in_dims)
        )
        self.act = activation(act)
        self.rest = MLP(hidden[0], hidden[1:], out_dim, act)
        self.in_dims, self.out_dim = tuple(in_dims), out_dim

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(inputs)}")
        h = sum(layer(x) for layer, x in zip(self.inputs, inputs, strict=True))
        return self.rest(self.act(h))


class ConvEncoder(nn.Module):
    """Images (batch, H*W) -> (batch, out_dim): two stride-2 4x4 convolutions (32 and 64
    channels, H and W divisible by 4), then a hidden layer of ``hidden`` units."""

    def __init__(
        self, image_shape: Sequence[int], out_dim: int, hidden: int = 256, act: str = "elu"
    ) -> None:
        super().__init__()
        h, w = _conv_grid(image_shape)
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),
            activation(act),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            activation(act),
            nn.Flatten(),
            nn.Linear(64 * h * w, hidden),
            activation(act),
            nn.Linear(hidden, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-1]
        y = self.net(x.reshape(-1, 1, *self.image_shape))
        return y.reshape(*batch, self.out_dim)


class ConvDecoder(nn.Module):
    """Codes (batch, z_dim) -> (batch, channels*H*W), channel-major (all of channel 0, then
    channel 1...): a hidden layer, then two stride-2 4x4 transposed convolutions."""

    def __init__(
        self,
        z_dim: int,
        image_shape: Sequence[int],
        channels: int = 1,
        hidden: int = 256,
        act: str = "elu",
    ) -> None:
        super().__init__()
        self.grid = _conv_grid(image_shape)
        self.channels = channels
        self.out_dim = channels * int(image_shape[0]) * int(image_shape[1])
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            activation(act),
            nn.Linear(hidden, 64 * self.grid[0] * self.grid[1]),
            activation(act),
            nn.Unflatten(1, (64, *self.grid)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            activation(act),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        y = self.net(z.reshape(-1, z.shape[-1]))
        return y.reshape(*batch, self.out_dim)


def _conv_grid(image_shape: Sequence[int]) -> tuple[int, int]:
    if len(image_shape) != 2 or image_shape[0] % 4 or image_shape[1] % 4:
        raise ValueError(
            f"the convolutional nets need 2-D images with sides divisible by 4; got "
            f"{tuple(image_shape)}: use --net mlp"
        )
    return int(image_shape[0]) // 4, int(image_shape[1]) // 4
