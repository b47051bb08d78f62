"""Generating from a trained VAE with Pyro's ``Predictive``.

- Prior predictive: ``z ~ p(z)``, ``x ~ p(x|z)``: ``Predictive(model, num_samples=1)``
  called with ``batch_size=n`` (no data, so x is sampled).
- Posterior predictive: ``z ~ q(z|x)``, ``x' ~ p(x'|z)``: the model with its observation
  removed (``poutine.uncondition``) run on the guide's samples.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer import Predictive
from torch import Tensor, nn

from . import latent
from .inputs import as_input
from .runtime import inference


@torch.no_grad()
def prior_predictive(model: nn.Module, n: int) -> dict[str, Tensor]:
    """``{"z", "x", "mean"}`` for ``n`` draws from the prior predictive; ``mean`` is E[x|z]."""
    with inference(model):
        draws = Predictive(model, num_samples=1, return_sites=["z", "x"])(batch_size=n)
        z, x = draws["z"][0], draws["x"][0]
        return {"z": z, "x": x, "mean": model.decode(z).mean}


@torch.no_grad()
def posterior_predictive(
    model: nn.Module, guide: nn.Module, x: Tensor, num_samples: int = 1
) -> dict[str, Tensor]:
    """``{"z", "x", "mean"}`` of shape (num_samples, batch, ...): x' ~ p(x'|z), z ~ q(z|x)."""
    x = as_input(x)
    with inference(model, guide):
        predictive = Predictive(
            poutine.uncondition(model),
            guide=guide,
            num_samples=num_samples,
            return_sites=["z", "x"],
        )
        draws = predictive(x)
        return {**draws, "mean": model.decode(draws["z"]).mean}


@torch.no_grad()
def reconstruct(model: nn.Module, guide: nn.Module, x: Tensor) -> Tensor:
    """E[x | z] at the posterior mean of z (see :func:`pyro_vae.latent.encode`)."""
    return latent.decode(model, latent.encode(guide, x))


@torch.no_grad()
def class_conditional(model: nn.Module, num_classes: int, draws: int) -> dict[str, Tensor]:
    """Generation given the label (conditional VAE, M2): ``draws`` prior draws z ~ p(z) per
    class, x ~ p(x | z, y); ``{"y", "z", "x", "mean"}``, class by class (class 0 first)."""
    device = next(model.parameters()).device
    labels = torch.arange(num_classes, device=device).repeat_interleave(draws)
    y = torch.nn.functional.one_hot(labels, num_classes).float()
    with inference(model):
        out = Predictive(model, num_samples=1, return_sites=["z", "x"])(y=y)
        z, x = out["z"][0], out["x"][0]
        return {"y": y, "z": z, "x": x, "mean": model.decode(z, y).mean}


@torch.no_grad()
def style_transfer(model: nn.Module, guide: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Each datum's style z = mean of q(z | x, y), decoded with every label:
    shape (batch, num_classes, x_dim)."""
    k, x = y.shape[-1], as_input(x)
    with inference(model, guide):
        z = guide.posterior(x, y).mean
        every = torch.eye(k, device=x.device)
        return model.decode(z[:, None, :].expand(-1, k, -1), every.expand(len(x), k, k)).mean
