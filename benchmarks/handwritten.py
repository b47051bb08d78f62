"""A hand-written PyTorch VAE: the yardstick the benchmarks hold pyro-vae against.

The same networks as ``pyro_vae.kinds.build(ModelConfig())`` (encoder MLP to [loc, raw scale],
scale = softplus + 1e-4; decoder MLP to Bernoulli logits), the negative ELBO written out by
hand (BCE-with-logits plus the analytic Gaussian KL), and one fused torch Adam.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_vae import data
from pyro_vae.guides.normal import MIN_SCALE
from pyro_vae.nets import MLP


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
