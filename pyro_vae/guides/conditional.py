"""Guides of the label-aware models: q(z | x, y), and q(y | x) q(z | x, y) for M2."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from torch import Tensor
from torch.distributions import Distribution

from ..inputs import check_rows
from ..nets import MLP, ConditionalMLP
from .normal import NormalGuide


class ConditionalNormalGuide(NormalGuide):
    """q(z | x, y) = N(mu_phi(x, y), diag(sigma_phi(x, y)^2)), site "z", for the conditional
    VAE: the encoder (a :class:`~pyro_vae.nets.ConditionalMLP`) sees the image and its one-hot
    label. Call ``guide(x, y)``.

    Args:
        x_dim, z_dim, hidden, activation: as for :class:`~pyro_vae.guides.NormalGuide`.
        num_classes: width of the one-hot label.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int = 10,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
    ) -> None:
        encoder = ConditionalMLP((x_dim, num_classes), hidden, 2 * z_dim, activation)
        super().__init__(x_dim, z_dim, hidden, activation, encoder=encoder)
        self.num_classes = num_classes

    def forward(  # type: ignore[override]
        self, x: Tensor | None = None, y: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        if x is None or y is None:
            raise ValueError("the guide q(z|x,y) encodes labelled data: call guide(x, y)")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            return self.sample_z(x, y)

    def sample_z(self, x: Tensor, y: Tensor) -> Tensor:
        """z ~ q(z | x, y)."""
        return pyro.sample("z", self.posterior(x, y))

    def posterior(self, x: Tensor, y: Tensor) -> Distribution:  # type: ignore[override]
        return super().posterior(x, y)

    @torch.no_grad()
    def point(self, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        """The mean of q(z | x, y)."""
        return self.posterior(x, y).mean


class M2Guide(ConditionalNormalGuide):
    """The guide of the M2 model (Kingma et al. 2014)::

        y ~ q(y | x) = Categorical(softmax(g_phi(x)))   # the classifier, where unlabelled
        z ~ q(z | x, y) = N(mu_phi(x, y), diag(sigma_phi(x, y)^2))

    Site "y" is marked for parallel enumeration (``config_enumerate``): with
    ``TraceEnum_ELBO`` the sum over the classes is exact instead of sampled. Labelled calls,
    ``guide(x, y)``, use the given y. ``classify(x)`` returns q(y | x)'s probabilities.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int = 10,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
    ) -> None:
        super().__init__(x_dim, z_dim, num_classes, hidden, activation)
        self.classifier = MLP(x_dim, hidden, num_classes, activation)

    def forward(  # type: ignore[override]
        self, x: Tensor | None = None, y: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        if x is None:
            raise ValueError("the guide q(y, z | x) encodes data: call guide(x) or guide(x, y)")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            if y is None:
                y = self.sample_y(x)
            return self.sample_z(x, y)

    @config_enumerate
    def sample_y(self, x: Tensor) -> Tensor:
        """y ~ q(y | x), enumerated in parallel under TraceEnum_ELBO."""
        return pyro.sample("y", dist.OneHotCategorical(logits=self.classifier(x)))

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """q(y | x) as probabilities, shape (batch, num_classes)."""
        return self.classifier(x).softmax(-1)

    @torch.no_grad()
    def point(self, x: Tensor, y: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """The mean of q(z | x, y), at the most probable class of q(y | x) where y is not
        given."""
        if y is None:
            probs = self.classify(x)
            y = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(x.dtype)
        return self.posterior(x, y).mean
