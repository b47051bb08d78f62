"""``--model vqvae``: the vector-quantised VAE (van den Oord et al. 2017), discrete codes from a
learned codebook, with a learned prior over them.

The code z (``z_dim`` numbers) is L = z_dim / D positions of D numbers each, every position one
of K codebook vectors e_1..e_K. As a Pyro model and guide::

    model:  k_l ~ Categorical(softmax(π_l)),  z = (e_{k_1}, ..., e_{k_L})    site "z"
            x ~ p(x | f_θ(z))                                                   site "x"
    guide:  z_e = g_φ(x);  k_l = argmin_k |z_e,l - e_k|;  z = δ(e_k) (site "z"), with the
            straight-through gradient z_e + sg(e_k - z_e) into the encoder

The posterior is a point mass on the nearest codes, so the ELBO is log p(x | z) + log p(z)
(KL = -log p(z): log K per position under a uniform prior, as the paper states). The prior's
logits π (L x K) are learned by the same ELBO: the categorical fitted to the codes the encoder
uses, from which :meth:`VQVAE.sample` draws. The paper's extra terms, |sg(z_e) - e|² (moves
the codebook) + β |z_e - sg(e)|² (commits the encoder, β ``--commitment``), are a
``pyro.factor`` in the guide: a training term, not part of the ELBO that evaluation reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor, nn

from .. import evaluate
from ..inputs import check_rows
from ..models import VAEModel
from ..nets import MLP
from ..registry import Options, Registry, at_least_one, non_negative, option
from ..runtime import FastPyroModule
from .base import ModelKind, _local, register


def nearest(z: Tensor, codebook: Tensor) -> Tensor:
    """The index of the codebook vector (K, D) nearest each position of ``z`` (.., L, D)."""
    d2 = (z.unsqueeze(-2) - codebook).pow(2).sum(-1)  # (.., L, K)
    return d2.argmin(-1)


class Codebook(TorchDistribution):
    """p(z) over codes of L positions, each one of the codebook's K vectors (K, D) with
    probabilities softmax(logits) (L, K), independently. ``log_prob`` reads the index of each
    position as its nearest codebook vector (codes drawn from it, or quantised by the guide,
    are codebook vectors)."""

    arg_constraints: dict = {}  # noqa: RUF012
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, codebook: Tensor, logits: Tensor, batch_shape: tuple[int, ...] = ()):
        self.codebook, self.logits = codebook, logits
        self.positions, self.code_dim = logits.shape[0], codebook.shape[1]
        width = self.positions * self.code_dim
        super().__init__(torch.Size(batch_shape), torch.Size([width]), validate_args=False)

    def expand(self, batch_shape, _instance=None):  # type: ignore[no-untyped-def]
        return Codebook(self.codebook, self.logits, tuple(batch_shape))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = (*sample_shape, *self.batch_shape)
        index = dist.Categorical(logits=self.logits).sample(torch.Size(shape))  # (.., L)
        return self.codebook[index].flatten(-2)

    def log_prob(self, value: Tensor) -> Tensor:
        z = value.unflatten(-1, (self.positions, self.code_dim))
        index = nearest(z.detach(), self.codebook.detach())
        log_p = self.logits.log_softmax(-1)  # (L, K)
        positions = torch.arange(self.positions, device=index.device)
        return log_p[positions, index].sum(-1)


class CodebookPrior(nn.Module):
    """The learned categorical prior over the guide's codebook (read from the guide, as the
    VampPrior reads it): logits (L, K), learned."""

    def __init__(self, guide: VQGuide) -> None:
        super().__init__()
        self._guide = [guide]  # held by reference: the codebook is trained once, as the guide's
        self.logits = nn.Parameter(torch.zeros(guide.positions, guide.codebook.shape[0]))

    def forward(self) -> Codebook:
        return Codebook(self._guide[0].codebook, self.logits)


class VQGuide(FastPyroModule):
    """The quantising encoder: z_e = g_φ(x) (z_dim numbers: L positions of D), each position
    replaced by its nearest codebook vector, site "z" a point mass there (see the module for
    the straight-through gradient and the codebook and commitment terms)."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        codebook_size: int = 128,
        code_dim: int = 2,
        commitment: float = 0.25,
        hidden: tuple[int, ...] = (500, 500),
        activation: str = "elu",
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim, self.code_dim = x_dim, z_dim, code_dim
        self.positions = z_dim // code_dim
        self.commitment = float(commitment)
        self.encoder = MLP(x_dim, hidden, z_dim, activation) if encoder is None else encoder
        # at the scale of a fresh encoder's outputs: a codebook far smaller (the paper's
        # U(-1/K, 1/K)) pulls every output to a few vectors near 0 and most are never used
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim))

    def forward(self, x: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        if x is None:
            raise ValueError("the guide q(z | x) encodes data: call guide(x) with x given")
        with pyro.plate("data", check_rows(x, self.x_dim)):
            z_e = self.encoder(x).unflatten(-1, (self.positions, self.code_dim))
            e = self.codebook[nearest(z_e.detach(), self.codebook.detach())]
            self.score_quantisation(z_e, e)
            z = z_e + (e - z_e).detach()  # the value e, the gradient z_e's
            return pyro.sample("z", dist.Delta(z.flatten(-2), event_dim=1))

    def score_quantisation(self, z_e: Tensor, e: Tensor) -> None:
        """|sg(z_e) - e|² + β |z_e - sg(e)|² per datum, added to the loss."""
        codebook = (z_e.detach() - e).pow(2).sum((-2, -1))
        commit = (z_e - e.detach()).pow(2).sum((-2, -1))
        pyro.factor("quantisation", codebook + self.commitment * commit, has_rsample=True)

    @torch.no_grad()
    def point(self, x: Tensor) -> Tensor:
        """The quantised code (z_dim numbers: L codebook vectors)."""
        z_e = self.encoder(x).unflatten(-1, (self.positions, self.code_dim))
        return self.codebook[nearest(z_e, self.codebook)].flatten(-2)

    @torch.no_grad()
    def indices(self, x: Tensor) -> Tensor:
        """The codebook index of each position, (batch, L)."""
        z_e = self.encoder(x).unflatten(-1, (self.positions, self.code_dim))
        return nearest(z_e, self.codebook)


VQ_GUIDES: Registry = Registry("guide of the VQ-VAE")
VQ_GUIDES.register("normal", VQGuide, "the nearest codebook vectors of the encoder's output")


@dataclass
class VQOptions(Options):
    """Options of the VQ-VAE."""

    codebook_size: int = option(128, "vqvae: K, vectors in the codebook", group="model")
    code_dim: int = option(
        2, "vqvae: D, numbers per codebook vector (z_dim / D positions)", group="model"
    )
    commitment: float = option(0.25, "vqvae: β, the weight of the commitment term", group="model")

    def validate(self) -> None:
        at_least_one(self, "codebook_size", "code_dim")
        non_negative(self, "commitment")


@register
class VQVAE(ModelKind):
    """k ~ p(k) learned categorical, z = e_k, x ~ p(x | z); the guide quantises g(x)."""

    name = "vqvae"
    help = "VQ-VAE: codes from a learned codebook, a learned categorical prior over them"
    options = VQOptions
    guides = VQ_GUIDES
    reconstruction_title = "test data (top) and E[x|z], z = the nearest codebook vectors (bottom)"
    centres_inputs = True

    def check(self, config: Any) -> None:
        super().check(config)
        if config.z_dim % config.code_dim:
            raise ValueError(
                f"--model vqvae splits z into positions of --code-dim {config.code_dim} numbers: "
                f"z_dim {config.z_dim} is no multiple of it (e.g. --z-dim "
                f"{config.code_dim * max(1, config.z_dim // config.code_dim)})"
            )
        if config.prior != "standard-normal":
            raise ValueError(
                f"--model vqvae brings its own prior (a learned categorical over the codebook): "
                f"leave out --prior {config.prior}"
            )

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        likelihood = self.likelihood(config)
        encoder, decoder = self.conv_nets(
            config, config.z_dim, getattr(likelihood, "params_per_pixel", 1)
        )
        if encoder is None and config.centred:  # the MLP reading 2x - 1, as the VAE's
            encoder = MLP(config.x_dim, config.hidden, config.z_dim, config.activation)
            encoder.centred = True
        guide = self.guides.choose(config.guide)(
            config.x_dim,
            config.z_dim,
            config.codebook_size,
            config.code_dim,
            config.commitment,
            config.hidden,
            config.activation,
            encoder,
        )
        model = VAEModel(
            config.x_dim,
            config.z_dim,
            config.hidden,
            prior=CodebookPrior(guide),
            likelihood=likelihood,
            activation=config.activation,
            decoder=decoder,
        )
        return model, guide

    def results(self, run: Any, test: Any) -> dict[str, Any]:
        """Codebook use: how many vectors the test codes use, and the perplexity of their
        frequencies (K when all are used evenly), as the VQ-VAE literature reports."""
        with _local(run):
            index = torch.cat(
                [
                    run.guide.indices(xb)
                    for (xb,) in evaluate.chunks(evaluate.as_args(test)[0], 1000)
                ]
            )
        counts = torch.bincount(index.flatten(), minlength=run.guide.codebook.shape[0]).float()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        return {"codes_used": int((counts > 0).sum()), "code_perplexity": math.exp(entropy)}

    def summary(self, result: dict[str, Any]) -> str:
        if "codes_used" not in result:
            return ""
        return (
            f", codebook vectors used {result['codes_used']}, "
            f"perplexity {result['code_perplexity']:.1f}"
        )
