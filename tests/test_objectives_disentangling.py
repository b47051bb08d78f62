"""β-TCVAE's total-correlation estimate and KL capacity annealing, on cases with known answers."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.objectives import TCVAE_ELBO, CapacityELBO, make_elbo, total_correlation
from pyro_vae.runtime import module_local_params
from pyro_vae.train import Trainer

from .test_combinations import DATA


def _aggregate(rho: float, n: int = 2000, s: float = 0.3):
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    loc = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    scale = torch.full_like(loc, s)
    z = loc + scale * torch.randn(n, 2, generator=g, dtype=torch.float64)
    r = rho / (1 + s**2)  # correlation of the aggregate N(0, cov + s² I)
    return z, loc, scale, -0.5 * math.log(1 - r**2)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_total_correlation_matches_the_gaussian_closed_form(rho):
    z, loc, scale, exact = _aggregate(rho)
    estimate = total_correlation(z, loc, scale, dataset_size=len(z)).mean().item()
    assert estimate == pytest.approx(exact, abs=0.04)
    if rho == 0:
        assert abs(estimate) < 0.04  # a factorised aggregate: no total correlation
    # a minibatch of 500 from the 2,000: minibatch-weighted sampling, the training case
    batch = total_correlation(z[:500], loc[:500], scale[:500], dataset_size=len(z))
    assert batch.mean().item() == pytest.approx(exact, abs=0.1)


def _pair():
    torch.manual_seed(0)
    return build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))


def _loss(elbo, model, guide, seed=1):
    with module_local_params(model, guide), pyro.validation_enabled(False):
        torch.manual_seed(seed)
        return elbo(model, guide)(DATA).item()


def test_tcvae_with_weight_one_is_the_elbo_and_adds_the_weighted_tc():
    model, guide = _pair()
    trace = _loss(make_elbo("trace"), model, guide)
    assert _loss(TCVAE_ELBO(tc_weight=1.0, dataset_size=64), model, guide) == pytest.approx(
        trace, rel=1e-5
    )
    heavier = _loss(TCVAE_ELBO(tc_weight=6.0, dataset_size=64), model, guide)
    with module_local_params(model, guide), pyro.validation_enabled(False):
        torch.manual_seed(1)
        tr = pyro.poutine.trace(guide).get_trace(DATA)
    fn = tr.nodes["z"]["fn"].base_dist
    tc = total_correlation(tr.nodes["z"]["value"], fn.loc, fn.scale, 64).sum().item()
    assert heavier - trace == pytest.approx(5 * tc, rel=1e-4, abs=1e-3)


def test_capacity_pulls_the_kl_towards_its_target():
    model, guide = _pair()

    def loss(gamma, target):
        elbo = CapacityELBO(gamma=gamma)
        elbo.target = target
        return _loss(elbo, model, guide)

    trace = _loss(make_elbo("trace"), model, guide)
    base = loss(1.0, 0.0)
    kl = loss(2.0, 0.0) - base  # summed over the batch, > 0 here
    assert kl > 0 and base == pytest.approx(trace, rel=1e-5)
    batch, c = DATA.shape[0], 50.0  # a target above the KL: the loss rewards more KL
    assert loss(1.0, c) == pytest.approx(base + batch * c - 2 * kl, rel=1e-5)


@pytest.mark.parametrize("elbo", ["tcvae", "capacity"])
def test_the_new_objectives_train_traced_as_eager(elbo):
    histories = {}
    for step in ("traced", "eager"):
        torch.manual_seed(0)
        model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
        config = TrainConfig(
            batch_size=32,
            lr=1e-2,
            elbo=elbo,
            capacity=5.0,
            capacity_epochs=3,
            capacity_gamma=10.0,
            tc_weight=4.0,
            step=step,
        )
        trainer = Trainer(model, guide, config, torch.device("cpu"))
        histories[step] = [r["train_elbo"] for r in trainer.fit(DATA, 4, progress=False)]
        if step == "traced":
            assert trainer.traced is not None and trainer.traced.disabled is None
    assert all(math.isfinite(v) for v in histories["traced"])
    assert histories["traced"] == pytest.approx(histories["eager"], rel=1e-5)
    if elbo == "capacity":
        assert trainer.elbo.target == 5.0  # raised per epoch to --capacity by epoch 3


def test_the_new_objectives_refuse_beta_and_warmup():
    with pytest.raises(ValueError, match="leave --beta at 1"):
        TrainConfig(elbo="tcvae", beta=4.0)
    with pytest.raises(ValueError, match="capacity_epochs must be at least 1"):
        TrainConfig(elbo="capacity", capacity_epochs=0)


@pytest.mark.parametrize(
    "name", ["tcvae", "capacity", "miwae", "wae-mmd", "dip-i", "factorvae", "hvae-hmc"]
)
def test_loss_and_grads_optimise_the_differentiable_loss(name):
    """Objectives defined by ``differentiable_loss`` give the same value by ``loss`` and by
    ``loss_and_grads`` (Pyro's SVI calls the latter), and its gradients."""
    from pyro_vae.objectives import Configured, DifferentiableObjective

    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    elbo = make_elbo(name, 2 if name == "miwae" else 1)
    assert isinstance(elbo, DifferentiableObjective)
    if isinstance(elbo, Configured):  # as the trainer configures it
        elbo.configure(TrainConfig(elbo=name), len(DATA))
    with module_local_params(model, guide):
        torch.manual_seed(1)
        value = elbo.loss(model, guide, DATA)
        torch.manual_seed(1)
        expected = elbo.differentiable_loss(model, guide, DATA)
        (grad,) = torch.autograd.grad(expected, [next(guide.parameters())])
        torch.manual_seed(1)
        assert elbo.loss_and_grads(model, guide, DATA) == pytest.approx(value, rel=1e-5)
    assert value == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(next(guide.parameters()).grad, grad, rtol=1e-4, atol=1e-6)
