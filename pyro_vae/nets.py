"""Plain ``nn.Module`` networks used by models and guides (no Pyro inside)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


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
