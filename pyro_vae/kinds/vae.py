"""``--model vae``: the VAE of Kingma & Welling (2014), one latent layer."""

from __future__ import annotations

from typing import Any

import torch
from pyro.distributions import Delta, ImproperUniform, constraints
from torch import nn
from torch.distributions import Distribution

from ..models import VAEModel
from ..nets import MLP
from ..registry import construct
from .base import ModelKind, register


@register
class VAE(ModelKind):
    """z ~ p(z), x ~ p(x | z); guide q(z | x) (any of ``--guide``), unlabelled data."""

    name = "vae"
    help = "the VAE: z ~ p(z), x ~ p(x|z), guide q(z|x) (default)"
    centres_inputs = True

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        likelihood = self.likelihood(config)
        guide_cls = self.guides.choose(config.guide)
        options = self.guide_options(config)
        width = getattr(guide_cls, "encoder_width", None)
        encoder_width = (
            construct(width, z_dim=config.z_dim, **options) if width else 2 * config.z_dim
        )
        encoder, decoder = self.conv_nets(
            config, encoder_width, getattr(likelihood, "params_per_pixel", 1)
        )
        if encoder is None and config.centred:  # the guide's own MLP, reading 2x - 1
            encoder = MLP(config.x_dim, config.hidden, encoder_width, config.activation)
            encoder.centred = True
        guide = construct(
            guide_cls,
            x_dim=config.x_dim,
            z_dim=config.z_dim,
            hidden=config.hidden,
            activation=config.activation,
            encoder=encoder,
            **options,
        )
        model = VAEModel(
            config.x_dim,
            config.z_dim,
            config.hidden,
            prior=self.prior(config, config.z_dim, guide),  # the guide first: a VampPrior reads it
            likelihood=likelihood,
            activation=config.activation,
            decoder=decoder,
        )
        check_proper(model, guide)
        return model, guide


def check_proper(model: VAEModel, guide: nn.Module) -> None:
    """An improper prior needs a point-mass guide: otherwise the ELBO is unbounded. Prior and
    guide put z in the same space: both on the unit sphere, or neither."""
    posterior = getattr(guide, "posterior", None)  # a user's guide may not have one
    if posterior is None:
        return
    with torch.no_grad():
        prior, q = model.prior(), posterior(torch.zeros(1, model.x_dim))
    if on_sphere(prior) != on_sphere(q):
        raise ValueError(
            "--prior spherical and --guide spherical put z on the unit sphere, and a density "
            "there has no counterpart in R^d: use both (or neither)"
        )
    if isinstance(prior, ImproperUniform) and not isinstance(getattr(q, "base_dist", q), Delta):
        raise ValueError(
            "the flat prior is improper: with a guide that has a density the ELBO is unbounded "
            "(the guide's entropy grows without limit); use --guide delta (a plain "
            "autoencoder) or a proper prior"
        )


def on_sphere(d: Distribution) -> bool:
    """Whether a distribution's support is the unit sphere (a user's may declare none)."""
    try:
        return isinstance(d.support, type(constraints.sphere))
    except NotImplementedError:
        return False
