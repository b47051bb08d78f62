"""MIWAE, CIWAE and PIWAE (Rainforth et al. 2018): each bound from the same log-weights as
its definition, Jensen's ordering draw by draw, MIWAE against the independent importance-sampled
estimate of E[IWAE_K], PIWAE's two gradients, options refused in one line, a CLI run."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from pyro_vae import cli, evaluate
from pyro_vae.bounds import CIWAE, MIWAE, PIWAE
from pyro_vae.config import TrainConfig
from pyro_vae.objectives import differentiable, make_elbo

from .test_estimators import ppca  # noqa: F401  (the fixture)
from .test_takehome import one_line_error


def configured(name: str, k: int, m: int = 1, beta: float = 0.5):
    bound = make_elbo(name, k)
    bound.configure(TrainConfig(elbo=name, num_particles=k, iw_estimates=m, ciwae_beta=beta), 1)
    return bound


def lme(t: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def test_each_bound_is_its_definition_on_the_same_draws(ppca):  # noqa: F811
    model, guide, x, _ = ppca
    miwae, ciwae, piwae = configured("miwae", 4, 3), configured("ciwae", 4, beta=0.3), None
    piwae = configured("piwae", 4, 3)
    assert isinstance(miwae, MIWAE) and isinstance(ciwae, CIWAE) and isinstance(piwae, PIWAE)
    assert miwae.num_particles == 12 and ciwae.num_particles == 4 and ciwae.m == 1
    log_w = miwae.log_weights(model, guide, (x,), {})
    assert log_w.shape == (3, 4, len(x))
    by_hand = torch.stack([lme(log_w[m], 0) for m in range(3)]).mean(0)
    assert torch.allclose(miwae.bound(log_w), by_hand)
    flat = log_w.reshape(12, -1)
    assert torch.allclose(piwae.bound(log_w), lme(flat, 0))
    four = log_w[:1]
    assert torch.allclose(ciwae.bound(four), 0.3 * four[0].mean(0) + 0.7 * lme(four[0], 0))
    # Jensen, draw by draw: ELBO <= MIWAE_(M, K) <= IWAE_(M K)
    assert bool((flat.mean(0) <= by_hand + 1e-5).all() and (by_hand <= lme(flat, 0) + 1e-5).all())
    # β = 1 is the ELBO, β = 0 IWAE_K
    assert torch.allclose(configured("ciwae", 4, beta=1.0).bound(four), four[0].mean(0))
    assert torch.allclose(configured("ciwae", 4, beta=0.0).bound(four), lme(four[0], 0))


def test_miwae_is_the_mean_of_iwae_bounds_as_importance_sampling_estimates_them(ppca):  # noqa: F811
    """E[MIWAE_(M, K)] = E[IWAE_K], which evaluate.log_likelihood estimates with K samples."""
    model, guide, x, _ = ppca
    xs = x.repeat(10, 1)
    torch.manual_seed(0)
    miwae = -configured("miwae", 5, 4).loss(model, guide, xs) / len(xs)
    torch.manual_seed(1)
    ll = evaluate.log_likelihood(model, guide, xs, num_samples=5)
    se = ll.std().item() / math.sqrt(len(ll))
    assert abs(miwae - ll.mean().item()) < 4 * se
    elbo = -make_elbo("trace", 20).loss(model, guide, xs) / len(xs)
    iwae20 = -make_elbo("iwae", 20).loss(model, guide, xs) / len(xs)
    assert elbo < miwae < iwae20


def test_piwae_gives_the_model_iwae_and_the_guide_miwae(ppca):  # noqa: F811
    model, guide, x, _ = ppca
    piwae = configured("piwae", 3, 2)
    assert not differentiable(piwae) and differentiable(configured("miwae", 3, 2))
    params = [p for p in (*model.parameters(), *guide.parameters()) if p.requires_grad]
    for p in params:
        p.grad = None
    torch.manual_seed(0)
    value = piwae.loss_and_grads(model, guide, x)
    got = [p.grad.clone() for p in params]
    torch.manual_seed(0)
    log_w = piwae.log_weights(model, guide, (x,), {})
    assert value == pytest.approx(-lme(log_w.reshape(6, -1), 0).sum().item(), rel=1e-5)
    model_params = [p for p in model.parameters() if p.requires_grad]
    guide_params = [p for p in guide.parameters() if p.requires_grad]
    want_model = torch.autograd.grad(
        -lme(log_w.reshape(6, -1), 0).sum(), model_params, retain_graph=True
    )
    want_guide = torch.autograd.grad(-MIWAE.bound(piwae, log_w).sum(), guide_params)
    for g, w in zip(got, [*want_model, *want_guide], strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--elbo", "miwae", "--iw-estimates", "0"], "iw_estimates must be at least 1"),
        (["--elbo", "ciwae", "--ciwae-beta", "1.5"], r"ciwae_beta must lie in \[0, 1\]"),
    ],
)
def test_options_are_refused_in_one_line(flags, match, capsys):
    assert re.search(match, one_line_error(capsys, ["train", *flags]))


@pytest.mark.parametrize("name", ["miwae", "ciwae", "piwae"])
def test_a_cli_run_trains_with_each(name, tmp_path, tiny_mnist_dir):
    out = tmp_path / name
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--elbo", name, "--particles", "2"]
    tiny = ["--z-dim", "2", "--hidden", "16", "--epochs", "2", "--ll-samples", "10"]
    tiny += ["--train-size", "256", "--test-size", "64"]
    assert cli.main([*argv, *tiny, "--iw-estimates", "2", "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert math.isfinite(result["elbo"]) and math.isfinite(result["log_likelihood"])
    assert f'elbo = "{name}"' in (out / "config.toml").read_text()
