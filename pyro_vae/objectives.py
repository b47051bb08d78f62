"""Reweighting the ELBO's KL term with a Pyro effect handler: β-VAE and KL warm-up."""

from __future__ import annotations

from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class ScaleLatents(Messenger):
    """Multiply the log-densities of the latent (unobserved) sample sites by ``scale``, in the
    model and the guide alike, wherever the ELBO runs inside this handler::

        with ScaleLatents(beta):
            loss = Trace_ELBO().differentiable_loss(model, guide, x)

    The ELBO E_q[log p(x|z)] - KL(q(z|x) || p(z)) then becomes E_q[log p(x|z)] - β KL, the
    β-VAE objective (Higgins et al. 2017); raising β from 0 to 1 over the first epochs is KL
    warm-up (Sønderby et al. 2016). It is ``poutine.scale`` restricted to latent sites:
    ``poutine.scale`` would scale the likelihood too. ``scale`` may be changed between uses.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def _pyro_sample(self, msg: dict) -> None:
        if not msg["is_observed"] and not site_is_subsample(msg):
            msg["scale"] = self.scale * msg["scale"]


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """β for 0-based ``epoch``: ramped linearly to β over ``warmup_epochs``, then held."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)
