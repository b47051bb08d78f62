"""Run by tests/test_distributed.py under torchrun: one training step of N ranks, each on its
part of one fixed batch; rank 0 saves the parameters after the step to argv[1]."""

from __future__ import annotations

import sys

import torch

from pyro_vae import distributed
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.runtime import module_local_params, set_seed
from pyro_vae.train import Trainer

CONFIG = ModelConfig(x_dim=12, z_dim=2, hidden=(8,), guide="delta")  # no draws: deterministic


def batch(n: int = 24) -> torch.Tensor:
    return (torch.rand(n, 12, generator=torch.Generator().manual_seed(5)) > 0.5).float()


def step(x: torch.Tensor, config: TrainConfig) -> Trainer:
    set_seed(distributed.rank_seed(0))
    model, guide = build(CONFIG)
    trainer = Trainer(model, guide, config, torch.device("cpu"))
    with module_local_params(model, guide):
        for _ in range(3):  # the traced step's first call, then replays
            trainer._step(x)
    return trainer


if __name__ == "__main__":
    world = distributed.init("cpu", timeout_s=60)
    x = batch()
    part = distributed.shard(x.shape[0])
    trainer = step(x[part], TrainConfig(batch_size=x.shape[0] // world.size, lr=0.05))
    if world.main:
        torch.save([p.detach() for p in trainer.loss.parameters()], sys.argv[1])
    distributed.leave(True)
