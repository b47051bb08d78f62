"""Amortized point-estimate encoder as a Pyro guide (MAP, or a plain autoencoder)."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import Distribution

from .base import AmortizedGuide


class DeltaGuide(AmortizedGuide):
    """q(z | x) = δ(z - f_φ(x)), site "z": one code per datum, no posterior spread.

    With it, the ELBO is log p(x | f(x)) + log p(f(x)): amortized MAP inference of z. With a
    flat prior (``priors.Flat``, log p(z) = 0) it is exactly a plain deterministic autoencoder
    trained on the likelihood's reconstruction loss (cross-entropy for Bernoulli).
    """

    @staticmethod
    def encoder_width(z_dim: int) -> int:
        """Outputs the encoder network must give: the code."""
        return z_dim

    def posterior(self, x: Tensor) -> Distribution:
        """δ(z - f(x)); its ``.mean`` is the code."""
        return dist.Delta(self.encoder(x), event_dim=1)
