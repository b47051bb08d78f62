"""The VQ-VAE (``--model vqvae``): the codebook prior's density is its categorical's; the guide
quantises to the nearest vectors with the straight-through gradient and scores the codebook and
commitment terms; the ELBO that evaluation reports leaves those out; a run trains, reports its
codebook use, draws samples and restores; options refused in one line."""

from __future__ import annotations

import math

import pytest
import torch
from pyro import poutine

from pyro_vae import evaluate
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.kinds.vqvae import Codebook, nearest

from .test_kinds import tiny_dataset


def pair(**options):
    torch.manual_seed(0)
    config = ModelConfig(model="vqvae", x_dim=16, z_dim=6, hidden=(8,), codebook_size=5, **options)
    return build(config)


def test_the_codebook_prior_is_a_categorical_over_its_vectors():
    torch.manual_seed(0)
    codebook, logits = torch.randn(5, 2), torch.randn(3, 5)
    prior = Codebook(codebook, logits)
    z = prior.sample((1000,))
    assert z.shape == (1000, 6) and prior.event_shape == (6,)
    index = nearest(z.unflatten(-1, (3, 2)), codebook)
    assert torch.equal(codebook[index].flatten(-2), z)  # every position a codebook vector
    expected = logits.log_softmax(-1)[torch.arange(3), index].sum(-1)
    assert torch.allclose(prior.log_prob(z), expected)
    # the draws follow the categorical's probabilities
    freq = torch.nn.functional.one_hot(index, 5).float().mean(0)
    assert torch.allclose(freq, logits.softmax(-1), atol=0.05)
    uniform = Codebook(codebook, torch.zeros(3, 5))
    assert torch.allclose(uniform.log_prob(z), torch.full((1000,), -3 * math.log(5)))


def test_the_guide_quantises_with_a_straight_through_gradient_and_scores_its_terms():
    _, guide = pair(commitment=0.5)
    bias = list(guide.encoder.parameters())[-1]
    x = torch.bernoulli(torch.full((4, 16), 0.5))
    trace = poutine.trace(guide).get_trace(x)
    z = trace.nodes["z"]["value"]
    z_e = guide.encoder(x).unflatten(-1, (3, 2))
    e = guide.codebook[nearest(z_e, guide.codebook)]
    assert torch.allclose(z, e.flatten(-2)) and torch.allclose(z, guide.point(x))
    # the gradient of z is z_e's: d(sum z)/d(encoder) as if z were z_e
    (grad_z,) = torch.autograd.grad(z.sum(), [bias], retain_graph=True)
    (grad_e,) = torch.autograd.grad(z_e.sum(), [bias], retain_graph=True)
    assert torch.allclose(grad_z, grad_e)
    site = trace.nodes["quantisation"]
    term = site["fn"].log_prob(site["value"])
    expected = (1 + 0.5) * (z_e - e).pow(2).sum((-2, -1))
    assert torch.allclose(term, expected, atol=1e-5)
    # its gradients: the codebook term moves the codebook, β times the commitment the encoder
    g_book, g_enc = torch.autograd.grad(term.sum(), [guide.codebook, bias])
    ref_book, ref_enc = torch.autograd.grad(
        ((z_e.detach() - e).pow(2).sum() + 0.5 * (z_e - e.detach()).pow(2).sum()),
        [guide.codebook, bias],
    )
    assert torch.allclose(g_book, ref_book) and torch.allclose(g_enc, ref_enc)


def test_the_reported_elbo_is_log_p_x_given_z_plus_log_p_z():
    model, guide = pair()
    x = torch.bernoulli(torch.full((32, 16), 0.5))
    terms = evaluate.elbo_terms(model, guide, x)
    assert terms["kl"] == pytest.approx(3 * math.log(5), rel=1e-5)  # uniform logits: L log K
    z = guide.point(x)
    recon = model.decode(z).log_prob(x).mean().item()
    assert terms["reconstruction"] == pytest.approx(recon, rel=1e-5)


def test_a_run_trains_reports_its_codebook_use_samples_and_restores(tmp_path):
    run, result = runs.train(
        ModelConfig(model="vqvae", z_dim=4, hidden=(16,), codebook_size=8),
        TrainConfig(epochs=3, batch_size=64, ll_samples=10, lr=1e-2),
        tmp_path,
        dataset=tiny_dataset(),
        progress=False,
    )
    assert 1 <= result["codes_used"] <= 8 and 1 <= result["code_perplexity"] <= 8
    assert "log_likelihood" not in result  # a point-mass posterior has no IS estimate
    history = [r["train_elbo"] for r in run.trainer.history]
    assert all(math.isfinite(v) for v in history)
    assert run.sample(5, seed=0).shape == (5, 1, 4, 4)
    again = runs.load(tmp_path / "checkpoint.pt")
    codes = run.encode(torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert torch.equal(again.encode(torch.zeros(3, 4, 4, dtype=torch.uint8)), codes)
    assert torch.equal(again.decode(codes), run.decode(codes))


def test_conv_nets_quantise_too():
    torch.manual_seed(0)
    config = ModelConfig(
        model="vqvae", net="conv", x_dim=256, image_shape=(1, 16, 16), z_dim=8, hidden=(8,)
    )
    model, guide = build(config)
    x = torch.rand(2, 256)
    assert guide.point(x).shape == (2, 8) and model.decode(guide.point(x)).mean.shape == (2, 256)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"z_dim": 7, "code_dim": 2}, "no multiple of it"),
        ({"prior": "mog"}, "brings its own prior"),
        ({"codebook_size": 0}, "codebook_size must be at least 1"),
        ({"commitment": -1.0}, "commitment must be a finite number"),
    ],
)
def test_options_are_refused_in_one_line(options, match):
    with pytest.raises(ValueError, match=match) as e:
        ModelConfig(model="vqvae", **options)
    assert "\n" not in str(e.value)
