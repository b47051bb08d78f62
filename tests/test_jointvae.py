"""JointVAE (``--model jointvae``): on a linear-Gaussian decoder the enumerated ELBO and both
log p(x) estimates match their closed forms; the relaxation is a proper Concrete model; the kind
trains, evaluates and draws its figures both ways; options refused in one line."""

from __future__ import annotations

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch import nn

from pyro_vae import cli, evaluate
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.kinds.jointvae import (
    ExpRelaxedCategorical,
    JointGuide,
    JointVAEModel,
    cluster_accuracy,
    summed_log_likelihood,
)

from .test_kinds import tiny_dataset

X_DIM, Z_DIM, K, SIGMA = 3, 2, 3, 0.5


class LinearDecoder(nn.Module):
    """f(z, c) = W z + B c: each category shifts the mean."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = torch.randn(X_DIM, Z_DIM, generator=g)
        self.b = 2 * torch.randn(X_DIM, K, generator=g)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return z @ self.w.T + c @ self.b.T


def gaussian(out: torch.Tensor) -> dist.Distribution:
    return dist.Normal(out, SIGMA).to_event(1)


def linear_pair() -> tuple[JointVAEModel, JointGuide]:
    torch.manual_seed(0)
    model = JointVAEModel(X_DIM, Z_DIM, K, (4,), likelihood=gaussian)
    model.decoder = LinearDecoder()
    guide = JointGuide(X_DIM, Z_DIM, K, (4,))
    last = [m for m in guide.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # a q(c | x) far from the uniform prior
        last.bias[2 * Z_DIM :] = torch.tensor([2.0, 0.0, -2.0])
    return model, guide


def exact_log_px(model: JointVAEModel, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log (1/K) sum_c N(x; b_c, W Wᵀ + σ² I)."""
    w, b = model.decoder.w, model.decoder.b
    cov = w @ w.T + SIGMA**2 * torch.eye(X_DIM)
    per_c = torch.stack([dist.MultivariateNormal(b[:, c], cov).log_prob(x) for c in range(K)])
    return per_c.logsumexp(0) - math.log(K)


def test_the_enumerated_elbo_is_the_closed_form_sum_over_the_categories():
    model, guide = linear_pair()
    x = torch.randn(4, X_DIM)
    h = guide.encoder(x).detach()
    q_z = guide.z_posterior(h)
    mu, var = q_z.mean, q_z.variance
    q_c = h[:, 2 * Z_DIM :].softmax(-1)
    w, b = model.decoder.w, model.decoder.b
    # E_q(z) log N(x; W z + b_c, σ²) = log N(x; W μ + b_c, σ²) - tr(W diag(var) Wᵀ) / (2σ²)
    trace = (w.pow(2) @ var.T).sum(0) / (2 * SIGMA**2)
    expected_lik = torch.stack(
        [gaussian(mu @ w.T + b[:, c]).log_prob(x) - trace for c in range(K)], -1
    )
    kl_z = torch.distributions.kl_divergence(q_z, dist.Normal(torch.zeros(Z_DIM), 1.0).to_event(1))
    kl_c = (q_c * (q_c.log() + math.log(K))).sum(-1)
    exact = ((q_c * expected_lik).sum(-1) - kl_z - kl_c).sum()
    elbo = TraceEnum_ELBO(num_particles=20000, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        estimate = -elbo.loss(model, guide, x)
    # Monte Carlo over z only (sd ~ 0.07 nats here); the categories' terms are far larger
    assert estimate == pytest.approx(exact.item(), abs=0.25)
    assert kl_c.sum() > 1 and (q_c * expected_lik - expected_lik / K).sum().abs() > 1


def test_both_log_likelihood_estimates_match_the_closed_form():
    model, guide = linear_pair()
    last = [m for m in guide.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # q(z | x) = N(0, 1.2²), q(c | x) uniform: proposals that cover
        last.weight.zero_()  # every posterior, so that both estimates converge
        last.bias.zero_()
        last.bias[Z_DIM : 2 * Z_DIM] = math.log(math.expm1(1.2))
    x = torch.randn(6, X_DIM)
    exact = exact_log_px(model, x)
    torch.manual_seed(0)
    summed = summed_log_likelihood(model, guide, x, 20000)
    sampled = evaluate.log_likelihood(model, guide, x, 20000, progress=False)
    assert torch.allclose(summed, exact, atol=0.05)
    assert torch.allclose(sampled, exact, atol=0.1)


def test_the_relaxed_code_is_a_concrete_density_in_log_space():
    tau, logits = torch.tensor(0.5), torch.randn(K)
    log_space = ExpRelaxedCategorical(tau, logits=logits)
    simplex = dist.RelaxedOneHotCategorical(tau, logits=logits)
    v = log_space.rsample((5,))
    assert torch.allclose(v.exp().sum(-1), torch.ones(5))
    # the same density on the simplex, up to the Jacobian of exp
    assert torch.allclose(log_space.log_prob(v), simplex.log_prob(v.exp()) + v.sum(-1), atol=1e-4)
    # finite at a low temperature where the simplex's corners underflow
    cold = ExpRelaxedCategorical(torch.tensor(0.01), logits=torch.tensor([30.0, 0.0, 0.0]))
    assert torch.isfinite(cold.log_prob(cold.rsample((100,)))).all()
    # the relaxed model is a proper density model: Trace_ELBO is a finite bound, gradients flow
    model = JointVAEModel(X_DIM, Z_DIM, K, (4,), likelihood=gaussian, temperature=0.67)
    guide = JointGuide(X_DIM, Z_DIM, K, (4,), temperature=0.67)
    loss = Trace_ELBO().differentiable_loss(model, guide, torch.randn(8, X_DIM))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in guide.parameters())


def test_cluster_accuracy_reads_each_category_as_its_most_frequent_label():
    categories = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    labels = torch.tensor([5, 5, 3, 1, 1, 3, 3, 5])
    assert cluster_accuracy(categories, labels) == pytest.approx(6 / 8)


@pytest.mark.parametrize(
    "discrete, elbo", [("exact", "enum"), ("relaxed", "trace")], ids=["exact", "relaxed"]
)
def test_the_kind_trains_evaluates_and_draws_both_ways(discrete, elbo, tmp_path):
    run, result = runs.train(
        ModelConfig(model="jointvae", z_dim=2, hidden=(8,), categories=3, discrete=discrete),
        TrainConfig(epochs=2, batch_size=64, ll_samples=6, elbo=elbo),
        tmp_path,
        dataset=tiny_dataset(),
        progress=False,
    )
    assert math.isfinite(result["log_likelihood"])
    assert math.isfinite(result["summed_log_likelihood"]) and result["summed_samples"] == 6
    assert 1 <= result["categories_used"] <= 3 and 0 < result["cluster_accuracy"] <= 1
    for name in ("categories.png", "prior_samples.png", "reconstructions.png"):
        assert (tmp_path / name).stat().st_size > 0
    codes = run.encode(torch.zeros(5, 4, 4, dtype=torch.uint8))
    assert codes["z"].shape == (5, 2) and codes["c_probs"].shape == (5, 3)
    assert run.decode(codes).shape == (5, 1, 4, 4)
    assert run.sample(7, seed=0).shape == (7, 1, 4, 4)
    # the checkpoint restores the same model
    again = runs.load(tmp_path / "checkpoint.pt")
    assert torch.equal(again.decode(codes), run.decode(codes))


def test_exact_without_enumeration_warns_and_options_are_refused_in_one_line():
    kind_warnings = build.__globals__["kind_of"]("jointvae").warnings
    assert "--elbo enum" in kind_warnings(ModelConfig(model="jointvae"), TrainConfig())[0]
    assert kind_warnings(ModelConfig(model="jointvae"), TrainConfig(elbo="enum")) == []
    for bad, needle in [
        ({"categories": 1}, "categories must be at least 2"),
        ({"discrete": "gumbel"}, "discrete must be one of exact, relaxed"),
        ({"gumbel_temperature": 0.0}, "gumbel_temperature must be a finite number > 0"),
        ({"net": "conv"}, "own MLP networks"),
    ]:
        with pytest.raises(ValueError, match=needle) as e:
            ModelConfig(model="jointvae", **bad)
        assert "\n" not in str(e.value)


def test_cli_run_writes_the_summed_likelihood(tiny_mnist_dir, tmp_path):
    out = tmp_path / "run"
    cli.main(
        [
            "train", "--model", "jointvae", "--elbo", "enum", "--categories", "4",
            "--data-dir", str(tiny_mnist_dir), "--train-size", "200", "--test-size", "50",
            "--epochs", "1", "--z-dim", "2", "--hidden", "16", "--ll-samples", "4",
            "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads((out / "evaluation.json").read_text())
    assert result["summed_samples"] == 4 and math.isfinite(result["summed_log_likelihood"])
