"""The structural likelihood (MS-SSIM, a pseudo-likelihood) and the plumbing that reports no
log p(x) or bits per dimension for a likelihood that is not a normalised density."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyro
import pytest
import torch
from pytorch_msssim import ms_ssim as package_ms_ssim

from pyro_vae import cli, evaluate
from pyro_vae.config import ModelConfig
from pyro_vae.kinds import build
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.likelihoods.structural import (
    MSSSIM,
    STANDARD_WEIGHTS,
    MSSSIMDistribution,
    ms_ssim,
    msssim_scales,
)
from pyro_vae.objectives import make_elbo
from pyro_vae.runtime import fast_modules, module_local_params
from pyro_vae.traced import TracedLoss

from .test_takehome import one_line_error

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "16", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))


def smooth_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """Images with structure at several scales: upsampled noise, values in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    c, h, w = shape
    coarse = torch.rand(n, c, h // 4, w // 4, generator=gen)
    fine = torch.rand(n, c, h, w, generator=gen)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    return (0.8 * up + 0.2 * fine).clamp(0, 1)


def test_ms_ssim_is_the_packages_at_its_standard_size():
    x = smooth_images(2, (3, 176, 176))
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    ours = ms_ssim(x, y, 11, STANDARD_WEIGHTS)
    theirs = package_ms_ssim(x, y, data_range=1.0, size_average=False)
    assert ours.shape == (2,) and torch.allclose(ours, theirs, atol=1e-6)
    assert msssim_scales((3, 176, 176)) == (11, pytest.approx(STANDARD_WEIGHTS, abs=1e-3))


@pytest.mark.parametrize(
    "shape, window, scales",
    [((1, 28, 28), 7, 3), ((3, 32, 32), 7, 3), ((3, 64, 64), 11, 3), ((28, 20), 5, 3)],
)
def test_window_and_scales_follow_the_image_size(shape, window, scales):
    chosen, weights = msssim_scales(shape)
    assert (chosen, len(weights)) == (window, scales)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(STANDARD_WEIGHTS[0] / STANDARD_WEIGHTS[1])
    assert msssim_scales(shape, 3)[0] == 3  # a given window is kept, with more scales
    assert len(msssim_scales(shape, 3)[1]) > scales


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_log_prob_is_zero_at_the_image_itself_and_falls_with_noise(shape):
    x = smooth_images(3, shape).reshape(3, -1)
    lik = MSSSIM(shape, x_dim=x.shape[1])
    d = lik(torch.logit(x, eps=1e-6))
    assert isinstance(d, MSSSIMDistribution) and not d.normalised and not lik.normalised
    assert d.batch_shape == (3,) and d.event_shape == (x.shape[1],)
    assert torch.allclose(d.mean, x, atol=1e-5)
    assert d.sample().shape == x.shape and torch.equal(d.sample((2,))[1], d.mean)
    assert bool(d.support.check(x).all()) and not bool(d.support.check(x + 2).any())
    perfect = d.log_prob(x)
    assert perfect.shape == (3,) and perfect.abs().max() < 1e-3 * lik.weight
    scores = [perfect]
    for noise in (0.05, 0.2, 0.5):
        noisy = (x + noise * torch.randn_like(x)).clamp(0, 1)
        scores.append(d.log_prob(noisy))
    for better, worse in itertools.pairwise(scores):
        assert bool((worse < better).all())
    assert bool((scores[-1] >= -lik.weight).all())  # 1 - MS-SSIM is at most 1
    # particles of z (plate dim -2): one score per particle and datum
    many = lik(torch.logit(x, eps=1e-6).expand(4, 3, -1))
    assert many.log_prob(x).shape == (4, 3) and many.expand((4, 3)).log_prob(x).shape == (4, 3)


def test_gradients_reach_the_decoder_and_traced_equals_eager():
    config = ModelConfig(
        likelihood="msssim", net="conv", x_dim=3 * 32 * 32, image_shape=(3, 32, 32), z_dim=4,
        hidden=(16,),
    )  # fmt: skip
    model, guide = build(config)
    assert model.likelihood.weight == 3 * 32 * 32  # one nat per value by default
    x = smooth_images(6, (3, 32, 32)).reshape(6, -1)
    loss = make_elbo("trace", 1)(model, guide)
    traced = TracedLoss(loss, report=lambda line: None)
    values, grads = [], []
    with module_local_params(model, guide), fast_modules(), pyro.validation_enabled(False):
        loss(x)
        for fn in (loss, traced, loss):
            loss.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            value = fn(x)
            value.backward()
            values.append(value.detach())
            grads.append([p.grad.clone() for p in model.decoder.parameters()])
    assert traced.disabled is None
    assert torch.isfinite(values[0]) and torch.allclose(values[1], values[0], rtol=1e-5)
    assert all(g.abs().sum() > 0 and torch.isfinite(g).all() for g in grads[0])
    for a, b in zip(grads[1], grads[0], strict=True):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-6


def test_flat_data_and_bad_options_are_refused_in_one_line():
    with pytest.raises(ValueError, match="msssim likelihood compares images") as flat:
        build(ModelConfig(likelihood="msssim", x_dim=10))
    assert "\n" not in str(flat.value) and "--likelihood" in str(flat.value)
    with pytest.raises(ValueError, match="flat rows"):  # an array of rows: images 1 x D
        MSSSIM((1, 1, 10))
    for bad, match in (
        ({"msssim_weight": 0.0}, "msssim_weight must be a finite number > 0"),
        ({"msssim_weight": float("nan")}, "msssim_weight must be"),
        ({"msssim_window": 4}, "msssim_window must be an odd whole number >= 3"),
    ):
        with pytest.raises(ValueError, match=match) as e:
            ModelConfig(likelihood="msssim", **bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="window of 31 pixels does not fit 28 x 28 images"):
        MSSSIM((1, 28, 28), msssim_window=31)
    assert "msssim" in LIKELIHOODS


def test_a_cli_run_reports_a_pseudo_elbo_and_no_log_likelihood(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = (smooth_images(48, (3, 32, 32)) * 255).round().byte().numpy()
    images[:, :, 8:24, 8:24] = rng.integers(0, 256, (48, 3, 1, 1), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", images)
    spec = f"array:{tmp_path / 'rgb.npy'}"
    line = one_line_error(
        capsys, ["train", "--dataset", spec, "--likelihood", "msssim", "--msssim-weight", "-1"]
    )
    assert "msssim_weight must be a finite number > 0" in line
    out = tmp_path / "run"
    argv = ["train", "--dataset", spec, "--likelihood", "msssim", "--net", "conv", *TINY]
    assert cli.main([*argv, "--ll-samples", "5", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "pseudo-ELBO" in err and "(no log p(x): a pseudo-likelihood)" in err
    result = json.loads((out / "evaluation.json").read_text())
    assert result["binarization"] == "none"  # 8-bit colour, and still no bits per dimension
    assert "log_likelihood" not in result and "bits_per_dim" not in result
    assert "elbo_bits_per_dim" not in result and result["elbo_kind"] == "pseudo-ELBO"
    assert result["normalised_likelihood"] is False
    assert "not a normalised density of x" in result["log_likelihood_skipped"]
    assert "test_bits_per_dim" not in (out / "metrics.csv").read_text()
    ckpt = str(out / "checkpoint.pt")
    assert cli.main(["evaluate", ckpt, "--samples", "5", "--json", str(tmp_path / "e.json")]) == 0
    printed = capsys.readouterr().out
    assert "pseudo-ELBO" in printed and "importance samples" not in printed
    assert "log_likelihood" not in json.loads((tmp_path / "e.json").read_text())
    from pyro_vae import run as runs

    run = runs.load(ckpt)
    with pytest.raises(ValueError, match="not a normalised density.*pseudo-ELBO") as e:
        evaluate.log_likelihood(run.model, run.guide, run.test_data, 5)
    assert "\n" not in str(e.value)
