"""FactorVAE and the adversarial autoencoder (``--elbo factorvae``, ``--elbo aae``): the critic's
density ratio recovers the total correlation of correlated Gaussians (closed form); what each
step trains; traced and eager alike; exact resume with the critic in the trainer's state;
options refused in one line."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import checkpoint, cli
from pyro_vae.adversary import Adversary
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.critics import Critic, permute_dims
from pyro_vae.kinds import build
from pyro_vae.objectives import ScaleLatents, make_elbo
from pyro_vae.train import Trainer

from .test_takehome import one_line_error

CPU = torch.device("cpu")
DATA = torch.bernoulli(torch.rand(96, 1).expand(96, 10).contiguous())


def test_permuting_each_dimension_keeps_the_marginals_and_drops_the_dependence():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5000, generator=gen)
    z = torch.stack([a, a + 0.1 * torch.randn(5000, generator=gen)], -1)
    shuffled = permute_dims(z, gen)
    for j in range(2):
        assert torch.equal(shuffled[:, j].sort().values, z[:, j].sort().values)
    assert torch.corrcoef(z.T)[0, 1] > 0.99 and abs(torch.corrcoef(shuffled.T)[0, 1]) < 0.05


def test_the_critic_estimates_the_total_correlation_of_correlated_gaussians():
    """TC(N(0, Σ)) = ½ sum_j log Σ_jj - ½ log det Σ; for unit variances and correlation ρ in two
    dimensions, -½ log(1 - ρ²). FactorVAE's estimate is the mean logit on the codes."""
    rho = 0.8
    exact = -0.5 * math.log(1 - rho**2)
    torch.manual_seed(0)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    critic = Critic("factorvae", 2, (64, 64), 1.0, 1e-2)
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-3, betas=critic.adversary_betas)
    for _ in range(600):
        critic._codes = (torch.randn(256, 2) @ chol.T, None)
        optimizer.zero_grad()
        critic.discriminator_loss(None, None, ()).backward()
        optimizer.step()
    with torch.no_grad():
        estimate = critic(torch.randn(20000, 2) @ chol.T).mean().item()
        independent = critic(torch.randn(20000, 2)).mean().item()
    assert estimate == pytest.approx(exact, abs=0.12)
    assert independent < estimate - 0.5  # codes without dependence score below


@pytest.mark.parametrize("elbo", ["factorvae", "aae"])
def test_each_step_trains_its_own_part(elbo):
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    trainer = Trainer(model, guide, TrainConfig(elbo=elbo, batch_size=32), CPU)
    (critic,) = trainer.critics
    assert isinstance(critic, Adversary) and critic in trainer.adversaries
    assert not {id(p) for p in critic.parameters()} & {
        id(p) for g in trainer.optimizer.param_groups for p in g["params"]
    }
    # the critic's term reaches the encoder, not the decoder (it reads codes, not images)
    term = critic.generator_loss(model, guide, (DATA[:32],))
    grads = torch.autograd.grad(term, [*guide.parameters(), *model.parameters()], allow_unused=True)
    n_guide = len(list(guide.parameters()))
    assert any(g is not None and g.abs().sum() > 0 for g in grads[:n_guide])
    assert all(g is None for g in grads[n_guide:])
    before = [p.detach().clone() for p in critic.parameters()]
    trainer.fit(DATA, 2, progress=False)
    assert any(not torch.equal(a, p) for a, p in zip(before, critic.parameters(), strict=True))


def test_aae_is_the_reconstruction_term_and_factorvae_the_elbo():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))

    def loss(elbo):
        torch.manual_seed(1)
        return elbo.loss(model, guide, DATA)

    with ScaleLatents(0.0):
        recon = loss(Trace_ELBO())
    assert loss(make_elbo("aae")) == pytest.approx(recon, rel=1e-6)
    assert loss(make_elbo("factorvae")) == pytest.approx(loss(Trace_ELBO()), rel=1e-6)


def test_traced_and_eager_steps_train_the_same(capsys):
    histories = {}
    for step in ("traced", "eager"):
        torch.manual_seed(0)
        model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
        trainer = Trainer(
            model, guide, TrainConfig(elbo="factorvae", batch_size=32, step=step), CPU
        )
        history = trainer.fit(DATA, 2, progress=False)
        histories[step] = [r["train_elbo"] for r in history]
    assert "eager step" not in capsys.readouterr().err
    assert histories["traced"] == pytest.approx(histories["eager"], rel=1e-5)


def test_a_cli_run_resumes_exactly_with_the_critic_in_the_trainers_state(tmp_path):
    x = (torch.rand(40, 1, 4, 4) > 0.5).to(torch.uint8) * 255
    np.save(tmp_path / "x.npy", x.numpy())
    argv = ["train", "--dataset", f"array:{tmp_path / 'x.npy'}", "--elbo", "aae", "--z-dim", "2"]
    argv += ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "16", "--ll-samples", "0"]
    argv += ["--no-progress", "--step", "eager"]
    assert cli.main([*argv, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*argv, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main([*argv, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (checkpoint.load(tmp_path / r / "checkpoint.pt")["trainer"] for r in "ab")
    assert a["step"] == b["step"] == 6 and len(a["critics"]) == 1
    for sa, sb in zip([*a["critics"], a["modules"]], [*b["critics"], b["modules"]], strict=True):
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--elbo", "factorvae", "--factor-gamma", "-1"], "factor_gamma must be a finite number"),
        (["--elbo", "aae", "--critic-lr", "0"], r"critic_lr must lie in \(0, 1\]"),
        (["--elbo", "aae", "--critic-hidden"], "critic_hidden needs at least one width"),
        (["--elbo", "aae", "--prior", "flat", "--guide", "delta"], "the flat prior is improper"),
    ],
)
def test_options_are_refused_in_one_line(flags, match, capsys, tiny_mnist_dir, tmp_path):
    argv = ["train", *flags, "--data-dir", str(tiny_mnist_dir), "--train-size", "64"]
    argv += ["--test-size", "16", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert re.search(match, one_line_error(capsys, argv))
