"""Likelihoods p(x|z): maps from the decoder's output to a distribution over one datum.

A likelihood is any callable ``f(out) -> Distribution`` where ``out`` is the decoder output of
shape ``(batch, x_dim * params_per_pixel)`` and the returned distribution has batch shape
``(batch,)`` and an event covering one datum. A user's own works as is::

    def laplace(out):
        return dist.Laplace(out, 0.1).to_event(1)

Optional attributes read by the model:

- ``params_per_pixel`` (default 1): how many decoder outputs each pixel needs;
- ``data_hint``: one line telling the user what data the likelihood expects, shown when data
  falls outside its support.

Likelihoods with parameters are ``nn.Module`` s, learned with the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

LikelihoodLike = Callable[[Tensor], Distribution]


class Bernoulli(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(f(z)_i)), x_i in {0, 1}."""

    data_hint = (
        "Bernoulli needs 0/1 data: binarize grey levels (binarize='dynamic' or 'fixed') "
        "or use likelihoods.ContinuousBernoulli"
    )

    def forward(self, out: Tensor) -> Distribution:
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)


class ContinuousBernoulli(nn.Module):
    """p(x|z) = prod_i CB(x_i; sigmoid(f(z)_i)), grey levels x_i in [0, 1] (Loaiza-Ganem &
    Cunningham 2019: the properly normalised Bernoulli for continuous data)."""

    data_hint = "ContinuousBernoulli needs grey levels in [0, 1]: scale 8-bit images by 1/255"

    def forward(self, out: Tensor) -> Distribution:
        return dist.ContinuousBernoulli(logits=out, validate_args=False).to_event(1)


class Normal(nn.Module):
    """p(x|z) = N(x; f(z), sigma^2 I), with sigma fixed or (``scale=None``) one learned scalar.

    With a linear decoder and a standard Normal prior this is probabilistic PCA.
    """

    data_hint = "Normal needs finite real-valued data"

    def __init__(self, scale: float | None = None) -> None:
        super().__init__()
        if scale is None:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            if scale <= 0:
                raise ValueError(f"Normal likelihood scale must be positive; got {scale}")
            self.register_buffer("log_scale", torch.tensor(math.log(scale)))

    def forward(self, out: Tensor) -> Distribution:
        return dist.Normal(out, self.log_scale.exp(), validate_args=False).to_event(1)


def check_support(d: Distribution, x: Tensor, likelihood: object) -> None:
    """Raise a one-line ``ValueError`` if any datum of ``x`` lies outside ``d.support``."""
    bad = ~d.support.check(x)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        name = getattr(likelihood, "__name__", type(likelihood).__name__)
        hint = getattr(likelihood, "data_hint", "transform the data into the likelihood's support")
        x_min, x_max = float(x.nan_to_num().min()), float(x.nan_to_num().max())
        raise ValueError(
            f"{n_bad} of {bad.numel()} data points lie outside the support of the {name} "
            f"likelihood ({d.support}; data range [{x_min:g}, {x_max:g}], NaN: "
            f"{bool(x.isnan().any())}): {hint}"
        )


def accepts_grey_levels(likelihood: LikelihoodLike, x_dim: int) -> bool:
    """Whether x = 0.5 lies in the likelihood's support (False for Bernoulli-like ones)."""
    k = getattr(likelihood, "params_per_pixel", 1)
    with torch.no_grad():
        d = likelihood(torch.zeros(1, x_dim * k))
    return bool(d.support.check(torch.full((1, x_dim), 0.5)).all())


LIKELIHOODS: dict[str, Callable[[], nn.Module]] = {
    "bernoulli": Bernoulli,
    "cbernoulli": ContinuousBernoulli,
    "normal": Normal,
}

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "ContinuousBernoulli",
    "Normal",
    "accepts_grey_levels",
    "check_support",
]
