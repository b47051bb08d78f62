"""The Hamiltonian VAE's objective (Caterini et al. 2018), ``--elbo hvae-hmc``: the guide's draw
z_0 ~ q(z | x) moved by K tempered leapfrog steps on the model's log joint, a volume-preserving
flow that needs no extra network and stays prior-agnostic (the steps read the model through
Pyro, the guide knows nothing of them).

With momentum ρ_0 ~ N(0, β_0^-1 I) (d = z_dim), each of the K steps is a leapfrog step of size
ε on the potential U(z) = -log p(x, z), then a tempering ρ <- sqrt(β_{k-1} / β_k) ρ on the
quadratic schedule sqrt(β_k) = ((1 - 1/sqrt(β_0)) k²/K² + 1/sqrt(β_0))^-1 (β_K = 1). Leapfrog
preserves volume and the tempering scales it by (β_0)^(d/2) in all, so the bound on log p(x)::

    L = log p(x, z_K) + log N(ρ_K; 0, I) - log q(z_0 | x) - log N(ρ_0; 0, β_0^-1 I) - d/2 log β_0

is an ELBO of the model p with an augmented, more flexible posterior (K = 0: the ELBO). The
step size ε (``--hmc-step``), K (``--hmc-steps``) and β_0 (``--hmc-beta0``) are fixed options
here; the paper also learns ε and β_0. The model's latent site is "z" (``--model vae``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from .objectives import ELBOS, DifferentiableObjective, require_reparameterized
from .registry import Options, non_negative, option


@dataclass
class HMCOptions(Options):
    """Options of the Hamiltonian VAE's objective."""

    hmc_steps: int = option(5, "--elbo hvae-hmc: K, leapfrog steps from the guide's draw")
    hmc_step: float = option(0.05, "--elbo hvae-hmc: ε, the leapfrog step size")
    hmc_beta0: float = option(
        0.5, "--elbo hvae-hmc: β_0 in (0, 1], the initial inverse temperature of the momentum"
    )

    def validate(self) -> None:
        non_negative(self, "hmc_steps")
        if getattr(self, "elbo", None) == "hvae-hmc" and (
            getattr(self, "beta", 1.0) != 1.0 or getattr(self, "warmup_epochs", 0)
        ):
            raise ValueError(
                "--elbo hvae-hmc moves z by the model's log joint, which --beta and "
                "--warmup-epochs would weigh differently in model and guide: leave them at 1 and 0"
            )
        if not (math.isfinite(self.hmc_step) and self.hmc_step > 0):
            raise ValueError(
                f"hmc_step must be a finite number > 0 (e.g. 0.05); got {self.hmc_step}"
            )
        if not (0 < self.hmc_beta0 <= 1):
            raise ValueError(f"hmc_beta0 must lie in (0, 1] (e.g. 0.5); got {self.hmc_beta0}")


def temperatures(beta0: float, steps: int) -> list[float]:
    """β_0..β_K of the quadratic tempering schedule (β_K = 1; no steps, no tempering)."""
    if steps == 0:
        return [1.0]
    root = 1 / math.sqrt(beta0)
    return [((1 - root) * k**2 / steps**2 + root) ** -2 for k in range(steps + 1)]


class HamiltonianELBO(DifferentiableObjective):
    """The bound of the module's docstring, one draw per datum (``num_particles`` averaged)."""

    def __init__(self, num_particles: int = 1) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=1)
        self.steps, self.step_size, self.beta0 = 5, 0.05, 0.5

    def configure(self, config: Any, dataset_size: int) -> None:
        self.steps, self.step_size = int(config.hmc_steps), float(config.hmc_step)
        self.beta0 = float(config.hmc_beta0)

    def trace_key(self) -> tuple:
        return ("hvae-hmc", self.steps, self.step_size, self.beta0)

    def log_joint(self, model, args, kwargs, z: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
        """log p(x, z) per datum, (n,), for codes ``z`` (n, d)."""
        trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(*args, **kwargs)
        trace.compute_log_prob()
        return sum(
            site["log_prob"]
            for site in trace.nodes.values()
            if site["type"] == "sample" and not site_is_subsample(site)
        )

    def differentiable_loss(self, model, guide, *args, **kwargs):  # type: ignore[no-untyped-def]
        loss: Tensor | float = 0.0
        for _ in range(self.num_particles):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            require_reparameterized(guide_trace, "hvae-hmc")
            latent = [
                site["name"]
                for site in guide_trace.nodes.values()
                if site["type"] == "sample"
                and not site["is_observed"]
                and not site_is_subsample(site)
            ]
            if latent != ["z"]:
                raise ValueError(
                    "--elbo hvae-hmc moves the one latent site 'z' of the guide: use --model vae"
                )
            guide_trace.compute_log_prob()
            z = guide_trace.nodes["z"]["value"]
            log_q = guide_trace.nodes["z"]["log_prob"]
            d = z.shape[-1]
            beta0 = self.beta0 if self.steps else 1.0  # no steps: no tempering to undo
            momentum = torch.randn_like(z) / math.sqrt(beta0)
            log_rho0 = torch.distributions.Normal(0.0, beta0**-0.5).log_prob(momentum).sum(-1)
            z, momentum = self.flow(model, args, kwargs, z, momentum)
            log_rhoK = torch.distributions.Normal(0.0, 1.0).log_prob(momentum).sum(-1)
            bound = (
                self.log_joint(model, args, kwargs, z)
                + log_rhoK
                - log_q
                - log_rho0
                - d / 2 * math.log(beta0)
            )
            loss = loss - bound.sum()
        return loss / self.num_particles

    def flow(self, model, args, kwargs, z: Tensor, momentum: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[no-untyped-def]
        """(z_K, ρ_K) from (z_0, ρ_0): K leapfrog steps on log p(x, z), each followed by the
        tempering of the momentum."""
        betas, eps = temperatures(self.beta0, self.steps), self.step_size
        with torch.enable_grad():
            grad = self.gradient(model, args, kwargs, z)
            for k in range(1, self.steps + 1):
                momentum = momentum + eps / 2 * grad
                z = z + eps * momentum
                grad = self.gradient(model, args, kwargs, z)
                momentum = momentum + eps / 2 * grad
                momentum = momentum * math.sqrt(betas[k - 1] / betas[k])
        return z, momentum

    def gradient(self, model, args, kwargs, z: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
        """∇_z log p(x, z), kept differentiable (the bound's gradient flows through the steps)."""
        if not z.requires_grad:  # a guide with no parameters upstream (a test's fixed draws)
            z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            self.log_joint(model, args, kwargs, z).sum(), z, create_graph=True
        )
        return grad


ELBOS.register(
    "hvae-hmc",
    HamiltonianELBO,
    "Hamiltonian VAE (Caterini et al. 2018): the guide's z moved by --hmc-steps tempered "
    "leapfrog steps on log p(x, z)",
    options=HMCOptions,
)
