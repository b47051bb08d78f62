"""A supervised-only classifier as a Pyro model: the baseline of the semi-supervised M2."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ..nets import MLP
from ..runtime import FastPyroModule


class Classifier(FastPyroModule):
    """p(y | x) = Categorical(softmax(g_theta(x))), site "y" observed, one datum at a time.

    With no latent variables the ELBO is the log-likelihood of the labels, so SVI with
    :class:`NoLatents` as the guide is maximum likelihood (cross-entropy) training through the
    library's one training loop. ``g_theta`` is an MLP ``x_dim -> hidden... -> num_classes``,
    the same network as :class:`~pyro_vae.guides.M2Guide`'s classifier.
    """

    def __init__(
        self,
        x_dim: int,
        num_classes: int = 10,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
    ) -> None:
        super().__init__()
        self.x_dim, self.num_classes = x_dim, num_classes
        self.net = MLP(x_dim, hidden, num_classes, activation)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("y", dist.OneHotCategorical(logits=self.net(x)), obs=y)

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """p(y | x) as probabilities, shape (batch, num_classes)."""
        return self.net(x).softmax(-1)


class NoLatents(FastPyroModule):
    """The guide of a model without latent variables: it samples nothing."""

    def forward(self, *args: object, **kwargs: object) -> None:
        return None
