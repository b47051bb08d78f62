"""What every amortized guide shares: an encoder network and the site it samples."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..inputs import check_rows
from ..nets import MLP
from ..registry import Registry
from ..runtime import FastPyroModule

# The guides of the one-latent VAE, by name; a guide registers itself where it is defined (or
# in this package's __init__). Built with those of x_dim, z_dim, hidden, activation, encoder and
# the guides' declared options their constructor names.
GUIDES: Registry = Registry("guide", group="pyro_vae.guides")


class AmortizedGuide(FastPyroModule):
    """q(z | x) at site "z" inside ``pyro.plate("data")``, from an encoder network: an MLP
    ``x_dim -> hidden... -> width`` unless ``encoder`` is given, ``width`` defaulting to the
    subclass's ``encoder_width(z_dim)``. Subclasses define ``posterior(x)`` and the static
    ``encoder_width``; ``point(x)`` is the posterior mean.

    Args:
        x_dim: size of one flattened datum.
        z_dim: size of the latent code (must match the model's).
        hidden: widths of the encoder MLP's hidden layers.
        activation: hidden-layer activation, one of ``nets.ACTIVATIONS``.
        encoder: another network (e.g. ``nets.ConvEncoder``) mapping (batch, x_dim) to
            (batch, width), instead of the MLP.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        encoder: nn.Module | None = None,
        width: int | None = None,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        width = self.encoder_width(z_dim) if width is None else width
        self.encoder = MLP(x_dim, hidden, width, activation) if encoder is None else encoder

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        raise NotImplementedError

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z|x) encodes data: call guide(x) with x given")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            return pyro.sample("z", self.posterior(x))

    def posterior(self, x: Tensor) -> Distribution:
        raise NotImplementedError

    @torch.no_grad()
    def point(self, x: Tensor) -> Tensor:
        """The point summary of q(z | x): its mean (subclasses without a closed-form mean say
        what they return instead)."""
        return self.posterior(x).mean
