"""Ex-post latent samplers (``pyro-vae sample CKPT --sampler gmm:10``): the Gaussian mixture's
EM against a known mixture, its density normalised, specs and refusals in one line, a CLI run."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from pyro_vae import cli, samplers
from pyro_vae.samplers import AutoregressiveFlow, GaussianMixture, TwoStageVAE

from .test_takehome import one_line_error


def two_blobs(n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[-3.0, 0.0], [2.0, 2.0]])
    which = (torch.rand(n, generator=gen) < 0.3).long()  # weights 0.7 / 0.3
    scales = torch.tensor([[0.5, 1.0], [1.0, 0.3]])
    x = means[which] + scales[which] * torch.randn(n, 2, generator=gen)
    return x, which


def test_em_recovers_a_known_mixture_and_never_lowers_the_likelihood():
    x, _ = two_blobs()
    gmm = GaussianMixture(2, iterations=200).fit(x)
    # EM never lowers it (up to the ridge, which makes each M step very slightly off)
    assert all(b >= a - 1e-6 for a, b in zip(gmm.history, gmm.history[1:], strict=False))
    order = gmm.means[:, 0].argsort()
    means, weights = gmm.means[order].float(), gmm.log_weights.exp()[order].float()
    assert torch.allclose(means, torch.tensor([[-3.0, 0.0], [2.0, 2.0]]), atol=0.1)
    assert torch.allclose(weights, torch.tensor([0.7, 0.3]), atol=0.03)
    variances = gmm.covs[order].diagonal(dim1=-2, dim2=-1).float()
    assert torch.allclose(variances, torch.tensor([[0.25, 1.0], [1.0, 0.09]]), rtol=0.15)
    draws = gmm.sample(20000, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (20000, 2) and draws.dtype == torch.float32
    assert torch.allclose(draws.mean(0), x.mean(0), atol=0.08)


def test_the_fitted_density_integrates_to_one():
    x, _ = two_blobs(500)
    gmm = GaussianMixture(3).fit(x)
    g = torch.linspace(-9, 8, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    p = gmm.log_prob(grid).exp().reshape(601, 601)
    integral = torch.trapezoid(torch.trapezoid(p, g, dim=1), g).item()
    assert integral == pytest.approx(1.0, abs=1e-3)


def test_specs_are_parsed_and_refused():
    assert samplers.parse("gmm:10") == ("gmm", 10) and samplers.parse("prior") == ("prior", None)
    for bad in ("bogus:3", "gmm:", "gmm:-1"):
        with pytest.raises(
            ValueError, match="choose prior, or one of gmm, maf, two-stage as NAME:K"
        ):
            samplers.parse(bad)
    with pytest.raises(ValueError, match="needs K >= 1"):
        samplers.fitted("gmm:0", torch.randn(10, 2))
    with pytest.raises(ValueError, match="needs at least 20 codes"):
        samplers.fitted("gmm:20", torch.randn(10, 2))
    codes = torch.randn(samplers.MAX_CODES + 50, 2)
    fitted = samplers.fitted("gmm:2", codes)
    assert math.isfinite(fitted.history[-1])


def test_a_cli_sample_from_a_sampler_fitted_to_the_codes(tmp_path, tiny_mnist_dir, capsys, quick):
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--z-dim", "2", "--hidden", "16"]
    argv += ["--epochs", "1", "--train-size", "300", "--test-size", "50", "--ll-samples", "0"]
    assert cli.main([*argv, "--no-progress", "--out", str(run)]) == 0
    ckpt = str(run / "checkpoint.pt")
    out = tmp_path / "draws.npy"
    argv = ["sample", ckpt, "--sampler", "gmm:3", "--n", "12", "--format", "npy"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    draws = np.load(out)
    assert draws.shape[0] == 12 and np.isfinite(draws).all()
    assert cli.main(["sample", ckpt, "--sampler", "gmm:3", "--n", "12"]) == 0
    assert (run / "samples-n12-seed0-gmm3.png").stat().st_size > 0
    for spec in ("maf:2", "two-stage:16"):
        assert cli.main(["sample", ckpt, "--sampler", spec, "--n", "6"]) == 0
    assert (run / "samples-n6-seed0-maf2.png").stat().st_size > 0
    assert (run / "samples-n6-seed0-two-stage16.png").stat().st_size > 0
    for flags, match in (
        (["--sampler", "gmm:3", "--temperature", "0.5"], "leave out --temperature and --label"),
        (["--sampler", "bogus"], "choose prior, or one of gmm"),
        (["--sampler", "maf:0"], "needs K >= 1 layers"),
    ):
        line = one_line_error(capsys, ["sample", ckpt, *flags])
        assert re.search(match, line)


@pytest.fixture
def quick(monkeypatch):
    """The trained samplers with fewer steps than their default (2,000)."""
    monkeypatch.setattr(samplers.Standardised, "steps", 600)


def banana(n: int = 4000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, generator=gen)
    return torch.stack([2 * a + 1, a**2 + 0.1 * torch.randn(n, generator=gen)], -1)


def test_the_flow_learns_a_curved_density_that_integrates_to_one(quick):
    x = banana()
    flow = AutoregressiveFlow(2).fit(x)
    assert flow.history[-1] > flow.history[0]
    draws = flow.sample(4000, generator=torch.Generator().manual_seed(1))
    # the dependence a Gaussian fit misses: the second coordinate follows the first's square
    follows = torch.corrcoef(torch.stack([((draws[:, 0] - 1) / 2) ** 2, draws[:, 1]]))[0, 1]
    assert follows > 0.9
    assert torch.allclose(draws.mean(0), x.mean(0), atol=0.15)
    # draws score as the codes do: the sampling direction is the density's
    assert flow.log_prob(draws).mean() == pytest.approx(flow.log_prob(x).mean().item(), abs=0.15)
    g1, g2 = torch.linspace(-9, 11, 401), torch.linspace(-3, 12, 401)
    p = flow.log_prob(torch.cartesian_prod(g1, g2)).exp().reshape(401, 401)
    integral = torch.trapezoid(torch.trapezoid(p, g2, dim=1), g1).item()
    assert integral == pytest.approx(1.0, abs=0.02)


def test_the_flow_matches_a_gaussians_closed_form_log_density(quick):
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.6, 0.0], [0.6, 2.0, 0.3], [0.0, 0.3, 0.5]])
    true = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0, 0.0]), cov)
    x = true.sample((4000,))
    flow = AutoregressiveFlow(2).fit(x)
    held_out = true.sample((4000,))
    assert flow.log_prob(held_out).mean() == pytest.approx(
        true.log_prob(held_out).mean().item(), abs=0.05
    )


def test_the_two_stage_vae_draws_the_codes_distribution(quick):
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]]) * 4
    x = torch.distributions.MultivariateNormal(torch.tensor([3.0, -1.0]), cov).sample((4000,))
    with torch.no_grad():  # fitted under no_grad too, as a script scoring a run calls it
        stage = TwoStageVAE(64).fit(x)
    assert stage.history[-1] > stage.history[0]  # the ELBO of the codes rises
    draws = stage.sample(8000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(draws.mean(0), x.mean(0), atol=0.15)
    assert torch.allclose(torch.cov(draws.T), torch.cov(x.T), rtol=0.15, atol=0.2)
    with pytest.raises(ValueError, match="needs a width K >= 1"):
        TwoStageVAE(0)
