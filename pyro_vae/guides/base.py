"""What every amortized guide shares: an encoder network and the site it samples."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.distributions import Distribution

from ..nets import MLP


class AmortizedGuide(PyroModule):
    """q(z | x) at site "z" inside ``pyro.plate("data")``, from an encoder network of
    ``width`` outputs (an MLP ``x_dim -> hidden... -> width`` unless ``encoder`` is given).
    Subclasses define ``posterior(x)`` and the static ``encoder_width(z_dim)``."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int],
        activation: str,
        encoder: nn.Module | None,
        width: int,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.encoder = MLP(x_dim, hidden, width, activation) if encoder is None else encoder

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z|x) encodes data: call guide(x) with x given")
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.posterior(x))

    def posterior(self, x: Tensor) -> Distribution:
        raise NotImplementedError
