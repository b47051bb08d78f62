"""The regularised autoencoder RAE-L2 (Ghosh et al. 2020) as pieces: a point-mass guide (the
deterministic encoder), the N(0, I) prior (its ||z||² / 2 term, weighted by --beta) and
--weight-decay on the model's parameters only (the decoder's L2), sampled ex post by a GMM."""

from __future__ import annotations

import re

import pytest
import torch

from pyro_vae import cli
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.train import Trainer

from .test_takehome import one_line_error

CPU = torch.device("cpu")
DATA = torch.bernoulli(torch.rand(64, 1).expand(64, 10).contiguous())


def test_weight_decay_reaches_the_models_parameters_and_not_the_guides():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,), guide="delta"))
    trainer = Trainer(model, guide, TrainConfig(weight_decay=0.5), CPU)
    free, decayed = trainer.optimizer.param_groups
    assert free["weight_decay"] == 0 and decayed["weight_decay"] == 0.5
    assert {id(p) for p in decayed["params"]} == {id(p) for p in model.parameters()}
    assert {id(p) for p in free["params"]} == {id(p) for p in guide.parameters()}
    # without it, one group (the optimizer state older runs saved)
    assert (
        len(
            Trainer(
                *build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,))), TrainConfig(), CPU
            ).optimizer.param_groups
        )
        == 1
    )
    # with no gradient from the data, a decayed weight shrinks and the guide's stay put
    trainer.optimizer.zero_grad()
    for p in [*model.parameters(), *guide.parameters()]:
        p.grad = torch.zeros_like(p)
    before_m = [p.detach().clone() for p in model.parameters()]
    before_g = [p.detach().clone() for p in guide.parameters()]
    trainer.optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(before_g, guide.parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before_m, model.parameters(), strict=True))


def test_an_rae_trains_and_samples_ex_post(tiny_mnist_dir, tmp_path, capsys):
    out = tmp_path / "rae"
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--guide", "delta", "--weight-decay"]
    argv += ["1e-3", "--z-dim", "2", "--hidden", "16", "--epochs", "1", "--train-size", "200"]
    argv += ["--test-size", "50", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    sample = ["sample", str(out / "checkpoint.pt"), "--sampler", "gmm:3", "--n", "9"]
    assert cli.main([*sample, "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert re.search(
        "weight_decay must be a finite number >= 0",
        one_line_error(capsys, [*argv[:-2], "--weight-decay", "-1", "--out", str(tmp_path / "x")]),
    )


def test_the_option_is_checked_where_it_is_defined():
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        TrainConfig(weight_decay=float("nan"))
