"""CUDA paths: run where torch sees a GPU, skip cleanly elsewhere."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae import checkpoint, evaluate, predictive
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.train import Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def test_train_evaluate_and_checkpoint_on_cuda(tmp_path):
    device = torch.device("cuda")
    model, guide = build(ModelConfig(z_dim=4, hidden=(64,)))
    model.to(device)
    guide.to(device)
    x = torch.bernoulli(torch.rand(512, 784, device=device) * 0.3)
    trainer = Trainer(model, guide, TrainConfig(batch_size=128, lr=3e-3), device)
    history = trainer.fit(x, epochs=3, test=x[:128], dynamic=True, progress=False)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]
    ll = evaluate.log_likelihood(model, guide, x[:16], num_samples=200)
    assert ll.device.type == "cuda" and math.isfinite(ll.mean().item())
    assert predictive.prior_predictive(model, 4)["mean"].device.type == "cuda"
    path = checkpoint.save(tmp_path / "c.pt", {"trainer": trainer.state_dict()})
    cpu_model, cpu_guide = build(ModelConfig(z_dim=4, hidden=(64,)))
    restored = Trainer(cpu_model, cpu_guide, TrainConfig(), torch.device("cpu"))
    state = checkpoint.load(path, map_location="cpu")["trainer"]
    state["rng"]["cuda"] = None
    restored.load_state_dict(state)
    assert torch.allclose(
        cpu_guide.posterior(x[:4].cpu()).mean, guide.posterior(x[:4]).mean.cpu(), atol=1e-5
    )
