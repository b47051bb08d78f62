"""Label-aware decoders: the conditional VAE and the semi-supervised M2 model.

Labels are one-hot float tensors of shape (batch, num_classes) (see ``data.one_hot``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import is_validation_enabled
from torch import Tensor, nn

from ..likelihoods import LikelihoodLike
from ..nets import ConditionalMLP
from ..priors import PriorLike
from .vae import VAEModel


def check_labels(y: Tensor, num_classes: int, n: int | None = None) -> None:
    """One-line errors for labels that are not a (batch, num_classes) one-hot float tensor."""
    if not isinstance(y, Tensor) or y.dim() != 2 or y.shape[-1] != num_classes:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"labels y must be one-hot of shape (batch, {num_classes}); got {shape} "
            "(convert class indices with pyro_vae.data.one_hot(labels, num_classes))"
        )
    if n is not None and y.shape[0] != n:
        raise ValueError(f"x has {n} rows but y has {y.shape[0]}: pass one label per datum")
    if not torch.is_floating_point(y):
        raise ValueError("labels y must be one-hot rows of 0.0 and 1.0 (use data.one_hot)")
    # the values under Pyro's validation only, as the data's support: the trainer validates
    # its first step, and a full check costs a device sync on every step
    if is_validation_enabled() and not bool(((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all()):
        raise ValueError("labels y must be one-hot rows of 0.0 and 1.0 (use data.one_hot)")


class CVAEModel(VAEModel):
    """Conditional VAE (Sohn et al. 2015), one datum at a time, the label y given::

        z ~ p(z)                          # prior, e.g. N(0, I); independent of y   site "z"
        x ~ p(x | z, y) = L(f_theta(z, y))  # decoder sees the code and the label   site "x"

    inside ``pyro.plate("data")``. ``f_theta`` is a :class:`~pyro_vae.nets.ConditionalMLP`
    on (z, y). ``model(x, y)`` scores data (the conditional ELBO bounds log p(x | y));
    ``model(y=y)`` generates one x per label.

    Args:
        x_dim, z_dim, hidden, prior, likelihood, activation: as for
            :class:`~pyro_vae.models.VAEModel`.
        num_classes: number of labels (the width of the one-hot y).
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int = 10,
        hidden: Sequence[int] = (500, 500),
        prior: PriorLike | None = None,
        likelihood: LikelihoodLike | None = None,
        activation: str = "elu",
    ) -> None:
        params_per_pixel = getattr(likelihood, "params_per_pixel", 1)
        decoder = ConditionalMLP((z_dim, num_classes), hidden, x_dim * params_per_pixel, activation)
        super().__init__(x_dim, z_dim, hidden, prior, likelihood, activation, decoder=decoder)
        self.num_classes = num_classes

    def forward(  # type: ignore[override]
        self, x: Tensor | None = None, y: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        if y is None:
            raise ValueError("the conditional VAE needs labels: call model(x, y) or model(y=y)")
        n = y.shape[0] if x is None else self._num_data(x, batch_size)
        check_labels(y, self.num_classes, n)
        with pyro.plate("data", n):
            z = self.sample_z()
            return self.sample_x(z, x, y)


class M2Model(CVAEModel):
    """The semi-supervised model M2 of Kingma et al. (2014), one datum at a time::

        y ~ p(y) = Categorical(1/K)       # the class: observed where labelled     site "y"
        z ~ p(z)                          # style, e.g. N(0, I)                     site "z"
        x ~ p(x | z, y) = L(f_theta(z, y))                                           site "x"

    With labelled data (``model(x, y)``) the model also scores the classifier q(y|x) of the
    guide on the label, ``aux_weight * log q(y | x)`` (site "y_aux", weighted by
    ``poutine.scale``): the auxiliary term of Kingma et al.'s objective, which trains the
    classifier on labelled data (unlabelled data train it only through the ELBO). It is part
    of the training objective, not of the generative model: evaluate log p(x) on unlabelled x.

    Args:
        classifier: the guide's network x -> class logits (shared, not copied); needed for the
            auxiliary term (``aux_weight > 0``).
        aux_weight: alpha, the weight of the auxiliary term (46 in Pyro's SS-VAE tutorial;
            0.1 * N in Kingma et al.).
        Others: as for :class:`CVAEModel`.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int = 10,
        hidden: Sequence[int] = (500,),
        prior: PriorLike | None = None,
        likelihood: LikelihoodLike | None = None,
        activation: str = "softplus",
        classifier: nn.Module | None = None,
        aux_weight: float = 46.0,
    ) -> None:
        super().__init__(x_dim, z_dim, num_classes, hidden, prior, likelihood, activation)
        if aux_weight > 0 and classifier is None:
            raise ValueError(
                "aux_weight > 0 needs the guide's classifier (classifier=guide.classifier)"
            )
        self.classifier = classifier
        self.aux_weight = float(aux_weight)
        self.register_buffer("class_probs", torch.full((num_classes,), 1.0 / num_classes))

    def forward(  # type: ignore[override]
        self, x: Tensor | None = None, y: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        n = y.shape[0] if x is None and y is not None else self._num_data(x, batch_size)
        if y is not None:
            check_labels(y, self.num_classes, n)
        with pyro.plate("data", n):
            y_value = self.sample_y(y)
            z = self.sample_z()
            out = self.sample_x(z, x, y_value)
            if x is not None and y is not None and self.aux_weight > 0:
                self.score_classifier(x, y)
            return out

    def sample_y(self, y: Tensor | None) -> Tensor:
        """y ~ p(y), observed when labelled."""
        return pyro.sample("y", dist.OneHotCategorical(probs=self.class_probs), obs=y)

    def score_classifier(self, x: Tensor, y: Tensor) -> None:
        """The auxiliary term aux_weight * log q(y | x) on labelled data."""
        with poutine.scale(scale=self.aux_weight):
            pyro.sample("y_aux", dist.OneHotCategorical(logits=self.classifier(x)), obs=y)
