"""WAE-MMD, InfoVAE, SWAE, DIP-VAE I/II (``--elbo wae-mmd``, ``info-mmd``, ``swae``, ``dip-i``,
``dip-ii``): the MMD estimate against the closed form of a Gaussian kernel between Gaussians,
unbiased at P = Q; the sliced Wasserstein estimate against the closed form between Gaussians;
DIP's penalty on a known covariance; each objective reduces to its known special case; options
refused in one line; a CLI run of each."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_vae import cli
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.divergences import (
    dip_penalty,
    kernel,
    mmd2,
    random_directions,
    sliced_wasserstein2,
)
from pyro_vae.kinds import build
from pyro_vae.objectives import ScaleLatents, make_elbo

from .test_takehome import one_line_error


def expected_rbf(a: torch.Tensor, s: float, b: torch.Tensor, t: float) -> float:
    """E exp(-|x - y|² / (2 d)) for x ~ N(a, s² I), y ~ N(b, t² I) in d dimensions."""
    d = a.numel()
    v = d + s**2 + t**2
    return (d / v) ** (d / 2) * math.exp(-float((a - b).pow(2).sum()) / (2 * v))


def test_the_mmd_estimate_matches_the_closed_form_of_a_gaussian_kernel():
    d, s, t = 3, 1.0, 0.5
    a, b = torch.zeros(d), torch.tensor([1.0, -0.5, 0.0])
    exact = expected_rbf(a, s, a, s) + expected_rbf(b, t, b, t) - 2 * expected_rbf(a, s, b, t)
    gen = torch.Generator().manual_seed(0)
    estimates = torch.stack(
        [
            mmd2(
                a + s * torch.randn(64, d, generator=gen),
                b + t * torch.randn(64, d, generator=gen),
                "rbf",
            )
            for _ in range(400)
        ]
    )
    se = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean().item() - exact) < 4 * se.item()
    # unbiased: P = Q gives 0 on average (single estimates may be negative)
    same = torch.stack(
        [
            mmd2(torch.randn(64, d, generator=gen), torch.randn(64, d, generator=gen))
            for _ in range(400)
        ]
    )
    assert abs(same.mean().item()) < 4 * (same.std() / math.sqrt(400)).item()
    assert bool((same < 0).any())
    # the IMQ kernel: 7 scales, each 1 at distance 0
    x = torch.randn(5, 4)
    assert torch.allclose(kernel(x, x).diagonal(), torch.full((5,), 7.0))
    with pytest.raises(ValueError, match="at least 2 codes"):
        mmd2(torch.randn(1, 2), torch.randn(3, 2))


def loss_of(elbo, model, guide, x, seed: int = 0) -> float:
    torch.manual_seed(seed)
    return elbo.loss(model, guide, x)


def test_each_objective_reduces_to_its_special_case():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    x = torch.bernoulli(torch.full((32, 10), 0.4))

    def configured(name, **options):
        elbo = make_elbo(name)
        elbo.configure(TrainConfig(elbo=name, **options), 32)
        return elbo

    # without its MMD, WAE is the reconstruction term alone: the ELBO with latents weighed 0
    wae = loss_of(configured("wae-mmd", mmd_weight=0.0), model, guide, x)
    with ScaleLatents(0.0):
        recon = loss_of(Trace_ELBO(), model, guide, x)
    assert wae == pytest.approx(recon, rel=1e-6)
    # InfoVAE with α = 0, λ = 1 is the ELBO; α = 1 is WAE with weight λ
    info = loss_of(configured("info-mmd", info_alpha=0.0, mmd_weight=1.0), model, guide, x)
    assert info == pytest.approx(loss_of(Trace_ELBO(), model, guide, x), rel=1e-6)
    a = loss_of(configured("info-mmd", info_alpha=1.0, mmd_weight=50.0), model, guide, x)
    b = loss_of(configured("wae-mmd", mmd_weight=50.0), model, guide, x)
    assert a == pytest.approx(b, rel=1e-6)
    # the MMD term: n MMD² of the codes and the prior's draws, times λ
    big = loss_of(configured("wae-mmd", mmd_weight=10.0), model, guide, x)
    torch.manual_seed(0)
    trace = poutine.trace(guide).get_trace(x)
    z = trace.nodes["z"]["value"]
    draws = poutine.trace(poutine.replay(model, trace=trace)).get_trace(x).nodes["z"]["fn"].sample()
    assert big == pytest.approx(recon + 10.0 * 32 * mmd2(z, draws).item(), rel=1e-4)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--elbo", "wae-mmd", "--mmd-weight", "-1"], "mmd_weight must be"),
        (["--elbo", "wae-mmd", "--mmd-kernel", "cauchy"], "mmd_kernel must be one of imq, rbf"),
        (["--elbo", "info-mmd", "--info-alpha", "2"], r"info_alpha must lie in \[0, 1\]"),
        (["--elbo", "swae", "--swd-weight", "nan"], "swd_weight must be a finite number"),
        (["--elbo", "swae", "--swd-projections", "0"], "swd_projections must be at least 1"),
        (["--elbo", "dip-i", "--dip-diag", "-2"], "dip_diag must be a finite number"),
        (["--elbo", "dip-ii", "--guide", "iaf"], "use --guide normal"),
    ],
)
def test_options_are_refused_in_one_line(flags, match, capsys):
    assert re.search(match, one_line_error(capsys, ["train", *flags]))


@pytest.mark.parametrize("name", ["wae-mmd", "info-mmd", "swae", "dip-i", "dip-ii"])
def test_a_cli_run_trains_with_each(name, tmp_path, tiny_mnist_dir):
    out = tmp_path / name
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--elbo", name, "--z-dim", "2"]
    argv += ["--hidden", "16", "--epochs", "2", "--train-size", "256", "--test-size", "64"]
    assert cli.main([*argv, "--ll-samples", "10", "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert math.isfinite(result["elbo"]) and math.isfinite(result["log_likelihood"])


def test_a_batch_of_one_has_no_mmd_term():
    """An epoch's remainder of one datum: the MMD² needs pairs, so only the other terms count."""
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    x = torch.bernoulli(torch.full((1, 10), 0.4))
    elbo = make_elbo("wae-mmd")
    elbo.configure(TrainConfig(elbo="wae-mmd"), 1)
    loss = elbo.differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)
    loss.backward()


def test_the_sliced_wasserstein_estimate_matches_the_closed_form_between_gaussians():
    """Between N(a, s² I) and N(b, t² I) every projection is a pair of 1-D Gaussians with
    W₂² = (θ·(a - b))² + (s - t)²; over uniform directions, |a - b|² / d + (s - t)²."""
    d, s, t, n = 4, 1.0, 0.5, 5000
    a, b = torch.zeros(d), torch.tensor([1.0, -1.0, 0.5, 0.0])
    gen = torch.Generator().manual_seed(0)
    x = a + s * torch.randn(n, d, generator=gen)
    y = b + t * torch.randn(n, d, generator=gen)
    torch.manual_seed(0)
    directions = random_directions(500, d, x)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(500))
    # given the directions, exactly mean_l (θ_l·(a - b))² + (s - t)²: what is left is sampling
    given = ((directions @ (a - b)) ** 2).mean().item() + (s - t) ** 2
    assert sliced_wasserstein2(x, y, directions).item() == pytest.approx(given, rel=0.03)
    # and over uniform directions |a - b|² / d + (s - t)²
    assert given == pytest.approx(float((a - b).pow(2).sum()) / d + (s - t) ** 2, rel=0.1)
    assert sliced_wasserstein2(x, x[torch.randperm(n)], directions).item() == 0
    with pytest.raises(ValueError, match="equally many draws"):
        sliced_wasserstein2(x, y[:10], directions)


def test_dip_penalises_the_covariance_of_the_means_or_of_q():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert dip_penalty(cov, 10.0, 3.0).item() == pytest.approx(10 * 0.5 + 3 * 1.0)
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    x = torch.bernoulli(torch.full((32, 10), 0.4))
    q = guide.posterior(x)
    loc, var = q.base_dist.loc.detach(), q.base_dist.scale.detach().pow(2)
    cov_i = torch.cov(loc.T, correction=0)
    elbo = loss_of(Trace_ELBO(), model, guide, x)
    for name, cov in [("dip-i", cov_i), ("dip-ii", cov_i + torch.diag(var.mean(0)))]:
        objective = make_elbo(name)
        objective.configure(TrainConfig(elbo=name, dip_offdiag=2.0, dip_diag=5.0), 32)
        expected = elbo + 32 * dip_penalty(cov, 2.0, 5.0).item()
        assert loss_of(objective, model, guide, x) == pytest.approx(expected, rel=1e-5)


def test_swae_is_the_reconstruction_term_plus_n_sliced_wasserstein():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    x = torch.bernoulli(torch.full((32, 10), 0.4))
    objective = make_elbo("swae")
    objective.configure(TrainConfig(elbo="swae", swd_weight=0.0), 32)
    with ScaleLatents(0.0):
        recon = loss_of(Trace_ELBO(), model, guide, x)
    assert loss_of(objective, model, guide, x) == pytest.approx(recon, rel=1e-6)
    objective.configure(TrainConfig(elbo="swae", swd_weight=7.0, swd_projections=3), 32)
    torch.manual_seed(0)
    trace = poutine.trace(guide).get_trace(x)
    draws = poutine.trace(poutine.replay(model, trace=trace)).get_trace(x).nodes["z"]["fn"].sample()
    directions = random_directions(3, 2, draws)
    sw = sliced_wasserstein2(trace.nodes["z"]["value"], draws, directions).item()
    assert loss_of(objective, model, guide, x) == pytest.approx(recon + 7.0 * 32 * sw, rel=1e-4)
