"""Objectives with a critic: a discriminator on the codes, trained against the encoder beside the
SVI step: FactorVAE (Kim & Mnih 2018) and the adversarial autoencoder (Makhzani et al. 2016),
as ``--elbo factorvae`` and ``--elbo aae``.

For a batch x_1..n with codes z_i ~ q(z | x_i) (site "z") and a critic D with logit d(z)::

    FactorVAE: maximise  ELBO - γ sum_i d(z_i),
               D tells codes (label 1) from codes with each coordinate permuted over the batch
               (label 0), so that d(z) ≈ log q(z) / prod_j q(z_j): the batch's total
               correlation TC(q(z)) ≈ mean_i d(z_i), by the density-ratio trick;
    AAE:       maximise  E_q[log p(x | z)] + λ sum_i log D(z_i)   (no KL; non-saturating),
               D tells prior draws z̃ ~ p(z) (label 1) from codes (label 0): q(z) is pushed to
               p(z) adversarially instead of by a KL.

(γ ``--factor-gamma``, λ ``--aae-weight``.) The critic (an MLP of widths ``--critic-hidden``,
LeakyReLU 0.2) trains with an Adam of its own (``--critic-lr``, betas (0.5, 0.9)) on the
codes the encoder's step drew, after that step (:mod:`pyro_vae.adversary`). It is part of the
training objective, not of the model: it is saved with the trainer's state (a resumed run
continues exactly) and not needed to use the trained model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pyro import poutine
from torch import Tensor, nn

from .objectives import ELBOS, DifferentiableObjective, ScaleLatents
from .registry import Options, non_negative, option


@dataclass
class CriticOptions(Options):
    """Options of the objectives with a critic."""

    factor_gamma: float = option(10.0, "--elbo factorvae: γ, the weight of the total correlation")
    aae_weight: float = option(1.0, "--elbo aae: λ, the weight of the adversarial term per datum")
    critic_hidden: tuple[int, ...] = option(
        (500, 500), "--elbo factorvae / aae: widths of the critic's hidden layers"
    )
    critic_lr: float = option(1e-3, "--elbo factorvae / aae: the critic's Adam learning rate")

    def validate(self) -> None:
        non_negative(self, "factor_gamma", "aae_weight")
        if not self.critic_hidden:
            raise ValueError("critic_hidden needs at least one width (e.g. 500 500)")
        for width in self.critic_hidden:
            if int(width) < 1:
                raise ValueError(f"critic_hidden widths must be at least 1; got {width}")
        if not (0 < self.critic_lr <= 1):
            raise ValueError(f"critic_lr must lie in (0, 1] (e.g. 1e-4); got {self.critic_lr}")


class Critic(nn.Module):
    """A discriminator on codes: logit d(z), an MLP ``z_dim -> hidden... -> 1``, and the
    :class:`~pyro_vae.adversary.Adversary` steps of its objective (``kind``: "factorvae" or
    "aae"). It keeps the codes its generator step drew for its own step."""

    adversary_betas = (0.5, 0.9)

    def __init__(
        self, kind: str, z_dim: int, hidden: Sequence[int], weight: float, lr: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = z_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.kind, self.weight, self.adversary_lr = kind, float(weight), float(lr)
        self._codes: tuple[Tensor, Tensor | None] | None = None

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)

    def adversary_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def generator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor:
        guide_trace = poutine.trace(guide).get_trace(*args)
        if "z" not in guide_trace.nodes:
            raise ValueError(
                f"--elbo {self.kind} criticises the codes of site 'z': use --model vae"
            )
        z = guide_trace.nodes["z"]["value"]
        z = z.reshape(-1, z.shape[-1])
        draws = None
        if self.kind == "aae":
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
            prior = model_trace.nodes["z"]["fn"]
            try:
                draws = prior.sample().reshape(z.shape).detach()
            except NotImplementedError:
                raise ValueError(
                    f"--elbo aae matches the codes to draws from the prior, and "
                    f"{type(prior).__name__} has none (the flat prior is improper): use a "
                    "proper prior"
                ) from None
        self._codes = (z.detach(), draws)
        if self.kind == "factorvae":
            return self.weight * self(z).sum()  # γ n TC(q(z)), TC ≈ mean d(z)
        return self.weight * F.softplus(-self(z)).sum()  # -λ sum log D(z)

    def discriminator_loss(
        self, model: nn.Module, guide: nn.Module, args: tuple[Tensor, ...]
    ) -> Tensor:
        if self._codes is None:
            raise RuntimeError("the critic's step follows its objective's generator step")
        z, draws = self._codes
        real, fake = (z, permute_dims(z)) if self.kind == "factorvae" else (draws, z)
        logits = self(torch.cat([real, fake]))
        labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each coordinate of the codes (n, d) shuffled over the batch independently: draws from
    the product of the marginals prod_j q(z_j) (Kim & Mnih 2018, algorithm 1)."""
    n = z.shape[0]
    cols = [
        z[torch.randperm(n, generator=generator, device=z.device), j] for j in range(z.shape[1])
    ]
    return torch.stack(cols, -1)


class CriticObjective(DifferentiableObjective):
    """The ELBO (FactorVAE) or the reconstruction term alone (AAE); the critic's term is its
    adversary's (:meth:`adversaries`)."""

    def __init__(self, name: str, num_particles: int = 1) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=1)
        self.name = name

    def trace_key(self) -> tuple:
        return (self.name,)

    def adversaries(self, model: nn.Module, guide: nn.Module, config: Any) -> list[Critic]:
        """The critic of this objective for ``model``'s codes, on the model's device."""
        z_dim = getattr(model, "z_dim", None)
        if z_dim is None:
            raise ValueError(
                f"--elbo {self.name} criticises the codes of site 'z': use --model vae"
            )
        weight = config.factor_gamma if self.name == "factorvae" else config.aae_weight
        critic = Critic(self.name, int(z_dim), config.critic_hidden, weight, config.critic_lr)
        device = next(iter(model.parameters()), torch.empty(0)).device
        return [critic.to(device)]

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.name == "aae":
            with ScaleLatents(0.0):
                return super().differentiable_loss(model, guide, *args, **kwargs)
        return super().differentiable_loss(model, guide, *args, **kwargs)


ELBOS.register(
    "factorvae",
    lambda k: CriticObjective("factorvae", k),
    "FactorVAE (Kim & Mnih 2018): the ELBO - --factor-gamma γ TC(q(z)), TC by a critic",
    options=CriticOptions,
)
ELBOS.register(
    "aae",
    lambda k: CriticObjective("aae", k),
    "adversarial AE (Makhzani et al. 2016): E log p(x|z), q(z) matched to p(z) by a critic",
    options=CriticOptions,
)
