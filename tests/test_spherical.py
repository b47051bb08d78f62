"""Hyperspherical latents (``--prior spherical --guide spherical``): the power spherical density
integrates to one on S^1 and S^2, its entropy, KL to the uniform and mean match their closed
forms, its draws are reparameterized (the gradient of the mean in κ is the closed form's); the
uniform prior is uniform; a run trains; a prior and a guide in different spaces are refused."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import kl_divergence

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.spherical import HypersphericalUniform, PowerSpherical, log_sphere_area
from pyro_vae.train import Trainer

CPU = torch.device("cpu")


def unit(v: list[float]) -> torch.Tensor:
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.norm()


def test_the_density_integrates_to_one_on_the_circle_and_the_sphere():
    theta = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    circle = torch.stack([theta.cos(), theta.sin()], -1)
    p = PowerSpherical(unit([0.3, -1.0]), torch.tensor(4.0, dtype=torch.float64))
    assert torch.trapezoid(p.log_prob(circle).exp(), theta).item() == pytest.approx(1, abs=1e-6)
    # S^2: z = (sin a cos b, sin a sin b, cos a), area element sin a da db
    a = torch.linspace(0, math.pi, 801, dtype=torch.float64)
    b = torch.linspace(0, 2 * math.pi, 1601, dtype=torch.float64)
    aa, bb = torch.meshgrid(a, b, indexing="ij")
    z = torch.stack([aa.sin() * bb.cos(), aa.sin() * bb.sin(), aa.cos()], -1)
    q = PowerSpherical(unit([1.0, 2.0, -0.5]), torch.tensor(7.0, dtype=torch.float64))
    density = q.log_prob(z).exp() * aa.sin()
    integral = torch.trapezoid(torch.trapezoid(density, b, dim=1), a).item()
    assert integral == pytest.approx(1, abs=1e-4)
    assert math.exp(log_sphere_area(3)) == pytest.approx(4 * math.pi)


def test_entropy_kl_and_mean_match_monte_carlo():
    torch.manual_seed(0)
    d, n = 6, 400_000
    p = PowerSpherical(
        unit([1.0, -1.0, 0.5, 0.0, 2.0, 0.3]), torch.tensor(5.0, dtype=torch.float64)
    )
    z = p.rsample((n,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(n, dtype=torch.float64))
    log_p = p.log_prob(z)
    se = log_p.std().item() / math.sqrt(n)
    assert -log_p.mean().item() == pytest.approx(p.entropy().item(), abs=4 * se)
    uniform = HypersphericalUniform(d)
    kl = kl_divergence(p, uniform)
    assert kl.item() == pytest.approx((log_p - uniform.log_prob(z)).mean().item(), abs=4 * se)
    assert kl.item() > 0 and kl_divergence(
        PowerSpherical(p.loc, torch.tensor(0.0, dtype=torch.float64)), uniform
    ).item() == pytest.approx(0, abs=1e-9)  # κ = 0 is the uniform distribution
    assert torch.allclose(z.mean(0), p.mean, atol=0.005)


def test_draws_are_reparameterized():
    """E[μ·z] = κ / (κ + d - 1): the Monte Carlo gradient in κ is the closed form's."""
    torch.manual_seed(0)
    d = 4
    kappa = torch.tensor(3.0, requires_grad=True)
    loc = torch.tensor([0.0, 1.0, 0.0, 0.0])
    z = PowerSpherical(loc, kappa).rsample((200_000,))
    (z @ loc).mean().backward()
    assert kappa.grad.item() == pytest.approx((d - 1) / (3.0 + d - 1) ** 2, rel=0.03)


def test_the_uniform_prior_is_uniform():
    torch.manual_seed(0)
    z = HypersphericalUniform(5).sample((200_000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(len(z)))
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=0.01)
    assert torch.allclose(z.T @ z / len(z), torch.eye(5) / 5, atol=0.01)
    with pytest.raises(ValueError, match="z_dim >= 2"):
        HypersphericalUniform(1)


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "iwae"])
def test_a_hyperspherical_vae_trains(elbo, capsys):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(64, 1).expand(64, 10).contiguous())
    config = ModelConfig(x_dim=10, z_dim=3, hidden=(8,), prior="spherical", guide="spherical")
    model, guide = build(config)
    trainer = Trainer(model, guide, TrainConfig(elbo=elbo, batch_size=32, lr=1e-2), CPU)
    history = trainer.fit(x, 15, progress=False)
    values = [r["train_elbo"] for r in history]
    assert all(math.isfinite(v) for v in values) and sum(values[-3:]) > sum(values[:3])
    codes = guide.point(x)
    assert torch.allclose(codes.norm(dim=-1), torch.ones(64))


@pytest.mark.parametrize(
    "pieces", [{"prior": "spherical"}, {"guide": "spherical"}], ids=["prior", "guide"]
)
def test_a_prior_and_a_guide_in_different_spaces_are_refused(pieces):
    with pytest.raises(ValueError, match="use both") as e:
        build(ModelConfig(x_dim=10, z_dim=3, hidden=(8,), **pieces))
    assert "\n" not in str(e.value)


def test_the_traced_step_falls_back_to_pyros_with_a_note(capsys):
    histories = {}
    for step in ("traced", "eager"):
        torch.manual_seed(0)
        x = torch.bernoulli(torch.rand(64, 1).expand(64, 10).contiguous())
        config = ModelConfig(x_dim=10, z_dim=3, hidden=(8,), prior="spherical", guide="spherical")
        trainer = Trainer(*build(config), TrainConfig(batch_size=32, step=step), CPU)
        histories[step] = [r["train_elbo"] for r in trainer.fit(x, 2, progress=False)]
    assert "its backward fails" in capsys.readouterr().err
    assert histories["traced"] == histories["eager"]
