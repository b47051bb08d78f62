"""Adversaries: modules of a model trained *against* it, beside the SVI step.

VAE-GAN's discriminator (:class:`pyro_vae.likelihoods.adversarial.VAEGAN`) is one. The
:class:`~pyro_vae.train.Trainer` finds them among the model's modules and trains each with an
Adam of its own; this module says what it asks of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Adversary(Protocol):
    """A module of the model trained *against* it, beside the SVI step, by an Adam of its own
    (the discriminator of :class:`~pyro_vae.likelihoods.adversarial.VAEGAN`). The trainer finds
    adversaries among ``model.modules()``, keeps their parameters out of the SVI optimizer and
    their gradients off outside their own step, and per batch (``args``: what model and guide
    are called with):

    1. backpropagates the SVI loss (the ELBO, in which the adversary may define the likelihood);
    2. adds the gradients of ``generator_loss`` (of the model's parameters: the adversary's take
       none here) and steps the SVI optimizer;
    3. steps the adversary's Adam (``adversary_lr``, ``adversary_betas``) on
       ``discriminator_loss``, called after ``generator_loss`` on the same batch (it may reuse
       what that drew).

    Its optimizer's state is saved with the trainer's, so a run resumes exactly."""

    adversary_lr: float
    adversary_betas: tuple[float, float]

    def adversary_parameters(self) -> list[nn.Parameter]: ...

    def generator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor: ...

    def discriminator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor: ...


def adversaries(model: nn.Module) -> list[Adversary]:
    """The :class:`Adversary` modules among ``model``'s, each once."""
    return [m for m in model.modules() if isinstance(m, Adversary)]


@contextlib.contextmanager
def adversaries_frozen(found: Sequence[Adversary]) -> Iterator[None]:
    """The adversaries' parameters without gradients while the model's are computed: the SVI
    loss and the generator terms train the model only, and the discriminator's weight gradients
    are not computed for nothing."""
    params = [p for a in found for p in a.adversary_parameters()]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
