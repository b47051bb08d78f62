"""The VAE decoder as a Pyro model."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
from pyro.poutine.util import is_validation_enabled
from torch import Tensor, nn
from torch.distributions import Distribution

from ..inputs import check_rows
from ..likelihoods import Bernoulli, LikelihoodLike, check_support
from ..nets import MLP
from ..priors import PriorLike, as_prior
from ..runtime import FastPyroModule


class VAEModel(FastPyroModule):
    """Generative model of a VAE (Kingma & Welling 2014), one datum at a time::

        z ~ p(z)                       # prior, e.g. N(0, I)       site "z"
        x ~ p(x | z) = L(f_theta(z))   # likelihood of the decoder  site "x"

    for each datum inside ``pyro.plate("data")``. ``f_theta`` is an MLP
    ``z_dim -> hidden... -> x_dim * likelihood.params_per_pixel``.

    Call ``model(x)`` to score data (x observed; the form every Pyro ELBO needs) and
    ``model(batch_size=n)`` to generate (x sampled from the prior predictive).

    Args:
        x_dim: size of one flattened datum (784 for MNIST).
        z_dim: size of the latent code.
        hidden: widths of the decoder's hidden layers (``()`` for a linear decoder).
        prior: p(z); see :func:`pyro_vae.priors.as_prior` for what is accepted.
            Defaults to ``priors.StandardNormal(z_dim)``.
        likelihood: maps decoder output to p(x|z); see :mod:`pyro_vae.likelihoods`.
            Defaults to ``likelihoods.Bernoulli()``.
        activation: hidden-layer activation, one of ``nets.ACTIVATIONS``.
        decoder: another network for f_theta (e.g. ``nets.ConvDecoder``) instead of the MLP;
            it maps (batch, z_dim) to (batch, x_dim * params_per_pixel).
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        prior: PriorLike | None = None,
        likelihood: LikelihoodLike | None = None,
        activation: str = "elu",
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.prior = as_prior(prior, z_dim)
        self.likelihood = Bernoulli() if likelihood is None else likelihood
        params_per_pixel = getattr(self.likelihood, "params_per_pixel", 1)
        self.decoder = (
            MLP(z_dim, hidden, x_dim * params_per_pixel, activation) if decoder is None else decoder
        )

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        n = self._num_data(x, batch_size)
        with pyro.plate("data", n):
            z = self.sample_z()
            return self.sample_x(z, x)

    def sample_z(self) -> Tensor:
        """z ~ p(z)."""
        return pyro.sample("z", self.prior())

    def sample_x(self, z: Tensor, x: Tensor | None, *context: Tensor) -> Tensor:
        """x ~ p(x | z, context...), observed when ``x`` is given (context: e.g. a label for
        the conditional models)."""
        px = self.decode(z, *context)
        if x is not None and is_validation_enabled():
            check_support(px, x, self.likelihood)
        return pyro.sample("x", px, obs=x)

    def decode(self, z: Tensor, *context: Tensor) -> Distribution:
        """p(x | z) as a distribution; ``.mean`` gives the decoded image."""
        return self.likelihood(self.decoder(z, *context))

    def _num_data(self, x: Tensor | None, batch_size: int | None) -> int:
        if x is None:
            if batch_size is None:
                raise ValueError("model() needs data x to score, or batch_size=n to generate")
            return batch_size
        return check_rows(x, self.x_dim)
