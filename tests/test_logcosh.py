"""The log-cosh likelihood (PyTorch-VAE's LogCoshVAE) as a normalised density: its normaliser
against numerical integration, its sampler against the density's variance, PyTorch-VAE's loss
up to a constant, options refused in one line."""

from __future__ import annotations

import math
import re

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.kinds import build
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.likelihoods.logcosh import LogCosh, LogCoshDistribution

from .test_takehome import one_line_error

GRID = torch.linspace(-80, 80, 1_600_001, dtype=torch.float64)


def density(alpha: float, scale: float = 0.7) -> torch.Tensor:
    d = LogCoshDistribution(
        torch.zeros(1, 1, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), alpha
    )
    return d.log_prob(GRID.reshape(-1, 1, 1)).squeeze().exp()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 10.0, 100.0])
def test_the_density_integrates_to_one_and_its_sampler_matches_it(alpha):
    p = density(alpha)
    assert torch.trapezoid(p, GRID).item() == pytest.approx(1.0, abs=1e-6)
    variance = torch.trapezoid(GRID**2 * p, GRID).item()
    if alpha == 1.0:  # the hyperbolic secant: variance (pi s / 2)^2
        assert variance == pytest.approx((math.pi * 0.7 / 2) ** 2, rel=1e-6)
    torch.manual_seed(0)
    d = LogCoshDistribution(torch.zeros(1, 1), torch.tensor(0.7), alpha)
    draws = d.sample((100_000,))
    assert draws.shape == (100_000, 1, 1)
    assert draws.var().item() == pytest.approx(variance, rel=0.03)
    assert abs(draws.mean().item()) < 0.02


def test_it_is_pytorch_vaes_loss_up_to_a_constant():
    """-log p(x | z) with s = 1 is sum (1/a) log cosh(a (x - x̃)) + a constant."""
    alpha = 10.0
    likelihood = LogCosh(alpha)
    x = torch.rand(4, 6)
    recon = [torch.rand(4, 6), torch.rand(4, 6)]

    def pytorch_vae(r: torch.Tensor) -> torch.Tensor:  # LogCoshVAE.loss_function's term
        t = r - x
        return (alpha * t + torch.log1p(torch.exp(-2 * alpha * t)) - math.log(2)).sum(-1) / alpha

    nll = [-likelihood(r).log_prob(x) for r in recon]
    assert torch.allclose(nll[0] - nll[1], pytorch_vae(recon[0]) - pytorch_vae(recon[1]))
    d = likelihood(recon[0])
    assert d.batch_shape == (4,) and d.event_shape == (6,) and torch.equal(d.mean, recon[0])
    assert d.expand((3, 4)).log_prob(x).shape == (3, 4)  # particles broadcast


def test_a_model_with_it_builds_and_its_option_is_refused_in_one_line(capsys):
    assert "logcosh" in LIKELIHOODS
    model, _ = build(ModelConfig(x_dim=6, z_dim=2, hidden=(8,), likelihood="logcosh"))
    assert model.likelihood.alpha == 10.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"logcosh_alpha must lie in \(0, 1000\]"):
            ModelConfig(likelihood="logcosh", logcosh_alpha=bad)
    line = one_line_error(capsys, ["train", "--likelihood", "logcosh", "--logcosh-alpha", "0"])
    assert re.search(r"logcosh_alpha must lie in \(0, 1000\]", line)
