"""ELBO and importance-sampled log-likelihood against closed forms.

- A linear decoder with a Gaussian likelihood: E_q[log p(x|z)] and KL(q||p) are analytic.
- A Bernoulli decoder with a 1-D latent: E_q[log p(x|z)] by Gauss-Hermite quadrature.
- Probabilistic PCA (linear decoder, Gaussian noise, N(0, I) prior): the marginal
  p(x) = N(b, W W^T + sigma^2 I) is exact, so the importance-sampled estimate must converge
  to it from below, with ELBO <= estimate <= exact within Monte Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import evaluate, guides, likelihoods, models

SOFTPLUS_INV = lambda s: math.log(math.expm1(s))  # noqa: E731


def set_linear_guide(guide, loc_weight, loc_bias, scale):
    """Make the guide's (linear) encoder output loc = A x + c and a fixed scale."""
    z_dim = loc_bias.shape[0]
    layer = guide.encoder[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:z_dim] = loc_weight
        layer.bias[:z_dim] = loc_bias
        layer.bias[z_dim:] = torch.tensor(
            [SOFTPLUS_INV(float(s) - guides.normal.MIN_SCALE) for s in scale]
        )


def set_linear_decoder(model, weight, bias):
    with torch.no_grad():
        model.decoder[0].weight.copy_(weight)
        model.decoder[0].bias.copy_(bias)


def test_gaussian_elbo_matches_closed_form():
    sigma = 0.5
    w, b = torch.tensor([[1.5], [-0.7]]), torch.tensor([0.2, -0.1])
    model = models.VAEModel(2, 1, (), likelihood=likelihoods.Normal(sigma))
    guide = guides.NormalGuide(2, 1, ())
    set_linear_decoder(model, w, b)
    mu, s = 0.3, 0.4
    set_linear_guide(guide, torch.zeros(1, 2), torch.tensor([mu]), [s])
    x = torch.tensor([[1.0, -0.5]])
    expected_rec = sum(
        -0.5 * math.log(2 * math.pi * sigma**2)
        - ((x[0, d] - w[d, 0] * mu - b[d]) ** 2 + w[d, 0] ** 2 * s**2) / (2 * sigma**2)
        for d in range(2)
    )
    kl = 0.5 * (mu**2 + s**2 - 1 - 2 * math.log(s))
    expected = float(expected_rec - kl)
    # analytic KL + Monte Carlo reconstruction term, and the fully Monte Carlo estimate
    mf = -TraceMeanField_ELBO(
        num_particles=20000, vectorize_particles=True, max_plate_nesting=1
    ).loss(model, guide, x)
    assert mf == pytest.approx(expected, abs=0.03)
    mc = evaluate.elbo(model, guide, x.expand(20000, 2), batch_size=20000)
    assert mc == pytest.approx(expected, abs=0.03)
    assert expected < 0


def test_bernoulli_elbo_matches_quadrature_and_has_the_right_sign():
    w, b = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([0.1, 0.3, -0.2])
    model = models.VAEModel(3, 1, ())
    guide = guides.NormalGuide(3, 1, ())
    set_linear_decoder(model, w, b)
    mu, s = -0.4, 0.6
    set_linear_guide(guide, torch.zeros(1, 3), torch.tensor([mu]), [s])
    x = torch.tensor([[1.0, 0.0, 1.0]])
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = mu + s * nodes
    logits = w.numpy()[:, 0][None, :] * z[:, None] + b.numpy()[None, :]
    log_sig = -np.logaddexp(0, -logits)
    log_one_minus = -np.logaddexp(0, logits)
    xv = x.numpy()[0]
    rec = (xv * log_sig + (1 - xv) * log_one_minus).sum(1)
    expected_rec = float((weights * rec).sum() / math.sqrt(2 * math.pi))
    kl = 0.5 * (mu**2 + s**2 - 1 - 2 * math.log(s))
    expected = expected_rec - kl
    n = 40000
    estimate = evaluate.elbo(model, guide, x.expand(n, 3), batch_size=n)
    assert estimate == pytest.approx(expected, abs=0.02)
    # Pyro's loss is the negative ELBO: positive for discrete data
    assert Trace_ELBO().loss(model, guide, x) > 0
    assert expected < 0


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(1)
    d, k, sigma, n = 5, 2, 0.6, 200
    w = torch.tensor([[1.2, 0.9], [0.8, 1.1], [-0.5, 0.7], [0.3, -0.4], [1.0, 1.0]])
    b = torch.linspace(-1, 1, d)
    z = torch.randn(n, k)
    x = z @ w.T + b + sigma * torch.randn(n, d)
    cov = w @ w.T + sigma**2 * torch.eye(d)
    exact = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    model = models.VAEModel(d, k, (), likelihood=likelihoods.Normal(sigma))
    set_linear_decoder(model, w, b)
    # exact posterior: N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I; the guide is
    # diagonal, so it takes the exact mean and the marginal standard deviations
    m = w.T @ w + sigma**2 * torch.eye(k)
    a = torch.linalg.solve(m, w.T)
    post_sd = (sigma**2 * torch.linalg.inv(m)).diagonal().sqrt()
    guide = guides.NormalGuide(d, k, ())
    set_linear_guide(guide, a, -a @ b, post_sd)
    return model, guide, x, exact


def test_ppca_importance_sampling_converges_to_exact_log_likelihood(ppca):
    model, guide, x, exact = ppca
    exact_mean = exact.mean().item()
    elbo = evaluate.elbo(model, guide, x.repeat(200, 1), batch_size=8000)
    estimates = {}
    for k in (1, 10, 100, 1000, 5000):
        torch.manual_seed(k)
        ll = evaluate.log_likelihood(model, guide, x, num_samples=k)
        se = (ll - exact).std().item() / math.sqrt(len(ll))
        estimates[k] = (ll.mean().item(), (ll - exact).abs().max().item(), se)
    # the diagonal guide leaves a real gap for the estimator to close
    assert exact_mean - elbo > 0.05
    # ELBO <= estimate <= exact, within Monte Carlo error (per-datum noise at k=5000 is tiny)
    # (k = 1 is itself an ELBO estimate, one sample per datum)
    assert abs(estimates[1][0] - elbo) < 4 * estimates[1][2] + 0.01
    means = [estimates[k][0] for k in (1, 10, 100, 1000, 5000)]
    ses = [estimates[k][2] for k in (1, 10, 100, 1000, 5000)]
    assert all(
        later >= earlier - 4 * se for earlier, later, se in zip(means, means[1:], ses, strict=False)
    )
    assert elbo < means[-1]
    assert means[-1] <= exact_mean + 0.005
    # converges: the gap shrinks by an order of magnitude and ends within 0.01 nats per datum
    assert exact_mean - means[-1] < 0.01
    assert exact_mean - means[-1] < (exact_mean - means[0]) / 10
    assert estimates[5000][1] < 0.05  # every datum, not only the mean


def test_log_weights_shape_and_chunking_agree(ppca, monkeypatch):
    model, guide, x, exact = ppca
    lw = evaluate.log_weights(model, guide, x[:7], 11)
    assert lw.shape == (11, 7)
    torch.manual_seed(0)
    whole = evaluate.log_likelihood(model, guide, x[:20], num_samples=400)
    monkeypatch.setattr(evaluate, "MAX_ELEMENTS", 64)  # forces chunks over data and samples
    torch.manual_seed(0)
    chunked = evaluate.log_likelihood(model, guide, x[:20], num_samples=400)
    assert chunked.shape == (20,)
    # different chunks draw different samples: agreement is up to Monte Carlo error
    assert torch.allclose(whole, chunked, atol=0.3)
    assert abs(whole.mean() - exact[:20].mean()) < 0.05
    assert abs(chunked.mean() - exact[:20].mean()) < 0.05


def test_iwae_objective_is_the_k_sample_bound(ppca):
    """RenyiELBO(alpha=0, k) -- the trainer's ``iwae`` -- is the k-sample importance bound."""
    from pyro_vae.train import make_elbo

    model, guide, x, _ = ppca
    xs = x.repeat(20, 1)  # more data, less Monte Carlo noise in the comparison
    torch.manual_seed(0)
    iwae = -make_elbo("iwae", 10).loss(model, guide, xs) / len(xs)
    torch.manual_seed(1)
    ll = evaluate.log_likelihood(model, guide, xs, num_samples=10)
    se = ll.std().item() / math.sqrt(len(ll))
    assert abs(iwae - ll.mean().item()) < 4 * se * math.sqrt(2)
    elbo = -make_elbo("trace", 10).loss(model, guide, xs) / len(xs)
    assert iwae > elbo


def test_log_p_x_chunks_shrink_with_the_decoded_parameters():
    """A 5-component logistic mixture of 64 x 64 x 3 images decodes 184,320 parameters per
    datum: log p(x) takes fewer (sample, datum) pairs at once (8,192 of them were an OOM kill)."""
    from pyro_vae.config import ModelConfig
    from pyro_vae.kinds import build

    small, _ = build(ModelConfig(x_dim=784, z_dim=2, hidden=(8,)))
    assert evaluate.chunk_budget(small, torch.zeros(3, 784)) == evaluate.MAX_ELEMENTS
    big, _ = build(ModelConfig(x_dim=12288, z_dim=2, hidden=(8,), likelihood="logistic-mixture"))
    budget = evaluate.chunk_budget(big, torch.zeros(3, 12288))
    assert budget == evaluate.MAX_VALUES // (12288 * 15) < evaluate.MAX_ELEMENTS
