"""Hand-written PyTorch VAEs: the yardsticks the benchmarks hold pyro-vae against.

``HandWrittenVAE``: the same networks as ``pyro_vae.kinds.build(ModelConfig())`` (encoder MLP
to [loc, raw scale], scale = softplus + 1e-4; decoder MLP to Bernoulli logits), the negative
ELBO written out by hand (BCE-with-logits plus the analytic Gaussian KL), and one fused torch
Adam. ``HandWrittenVAEGAN``: the conv VAE-GAN of ``--likelihood vaegan`` by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_vae import data
from pyro_vae.guides.normal import MIN_SCALE
from pyro_vae.likelihoods.adversarial import DEFAULT_LAYER, Discriminator
from pyro_vae.nets import MLP, ConvDecoder, ConvEncoder


class HandWrittenVAE(nn.Module):
    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int], act: str = "elu") -> None:
        super().__init__()
        self.encoder = MLP(x_dim, hidden, 2 * z_dim, act)
        self.decoder = MLP(z_dim, hidden, x_dim, act)

    def forward(self, x: Tensor) -> Tensor:
        """Negative ELBO summed over the batch (what Pyro's Trace_ELBO returns)."""
        loc, raw = self.encoder(x).chunk(2, -1)
        scale = F.softplus(raw) + MIN_SCALE
        z = loc + scale * torch.randn_like(loc)
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum()
        return rec + kl

    def optimizer(self, lr: float = 1e-3) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=lr, fused=True)

    def train_epoch(
        self, opt: torch.optim.Optimizer, train: Tensor, batch_size: int, dynamic: bool
    ) -> float:
        """One pass over ``train``; returns the mean training ELBO per datum."""
        total = torch.zeros((), device=train.device)
        for x in data.batches(train, batch_size, dynamic=dynamic):
            loss = self(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return -total.item() / train.shape[0]

    def copy_into(self, model: nn.Module, guide: nn.Module) -> None:
        """Load these weights into a pyro-vae model/guide pair of the same architecture, so
        the project's own estimators evaluate both alike."""
        guide.encoder.load_state_dict(self.encoder.state_dict())
        model.decoder.load_state_dict(self.decoder.state_dict())


class HandWrittenVAEGAN(nn.Module):
    """The VAE-GAN of ``ModelConfig(net="conv", likelihood="vaegan")`` written out in plain
    PyTorch (Larsen et al. 2016, Algorithm 1): the same conv encoder, decoder and discriminator
    (:mod:`pyro_vae.nets`, :mod:`pyro_vae.likelihoods.adversarial`), per batch the negative
    feature-ELBO (Gaussian on the discriminator's layer-l features plus the analytic KL), the
    non-saturating GAN term of reconstructions (from the ELBO's z, detached) and prior images
    divided by γ into the decoder's gradient, one fused Adam step of encoder and decoder, then
    the discriminator's own Adam step on real / reconstructed / prior images."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        hidden: int = 256,
        act: str = "elu",
        layer: int | None = None,
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        x_dim = math.prod(image_shape)
        self.encoder = ConvEncoder(image_shape, 2 * z_dim, hidden, act)
        self.decoder = ConvDecoder(z_dim, image_shape, 1, hidden, act)
        self.discriminator = Discriminator(x_dim, image_shape)
        self.layer = layer or min(DEFAULT_LAYER, self.discriminator.layers)
        self.gamma, self.z_dim = gamma, z_dim

    def optimizers(self, lr: float = 1e-3, disc_lr: float = 3e-4) -> tuple[torch.optim.Adam, ...]:
        vae = [*self.encoder.parameters(), *self.decoder.parameters()]
        return (
            torch.optim.Adam(vae, lr=lr, fused=True),
            torch.optim.Adam(
                self.discriminator.parameters(), lr=disc_lr, betas=(0.5, 0.999), fused=True
            ),
        )

    def step(self, opts: tuple[torch.optim.Adam, ...], x: Tensor) -> Tensor:
        """One VAE-GAN step on the batch ``x``; returns the negative feature-ELBO (summed)."""
        vae_opt, disc_opt = opts
        d, n = self.discriminator, x.shape[0]
        d.requires_grad_(False)
        loc, raw = self.encoder(x).chunk(2, -1)
        scale = F.softplus(raw) + MIN_SCALE
        z = loc + scale * torch.randn_like(loc)
        real = d.features(x, self.layer)
        fake = d.features(torch.sigmoid(self.decoder(z)), self.layer)
        nll = 0.5 * (real - fake).pow(2).sum() + 0.5 * real.numel() * math.log(2 * math.pi)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum()
        loss = nll + kl
        vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        recon = torch.sigmoid(self.decoder(z.detach()))
        prior = torch.sigmoid(self.decoder(torch.randn(n, self.z_dim, device=x.device)))
        fakes = torch.cat([recon, prior])
        (F.softplus(-d(fakes)).sum() / self.gamma).backward()
        vae_opt.step()
        d.requires_grad_(True)
        disc_opt.zero_grad(set_to_none=True)
        logits = d(torch.cat([x, fakes.detach()]))
        ((F.softplus(-logits[:n]).sum() + F.softplus(logits[n:]).sum()) / n).backward()
        disc_opt.step()
        return loss.detach()

    def train_epoch(
        self, opts: tuple[torch.optim.Adam, ...], train: Tensor, batch_size: int
    ) -> float:
        """One pass over ``train`` (grey levels in [0, 1]); the mean feature-ELBO per datum."""
        total = torch.zeros((), device=train.device)
        for x in data.batches(train, batch_size):
            total += self.step(opts, x)
        return -total.item() / train.shape[0]
