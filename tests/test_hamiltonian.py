"""The Hamiltonian VAE's objective (``--elbo hvae-hmc``): the tempering schedule; the flow's
volume change is the bound's d/2 log β_0 (its Jacobian, computed); K = 0 is the ELBO; on a
linear-Gaussian model the bound stays below the exact log p(x) and the steps tighten it for a
poor guide; a run trains; options refused in one line."""

from __future__ import annotations

import itertools
import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import cli
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.hamiltonian import HamiltonianELBO, temperatures
from pyro_vae.kinds import build
from pyro_vae.objectives import make_elbo

from .test_takehome import one_line_error

D, X, SIGMA = 2, 3, 0.5
W = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.0]])


def model(x):
    """z ~ N(0, I), x ~ N(W z, σ² I): p(x) = N(0, W Wᵀ + σ² I) exactly."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, SIGMA).to_event(1), obs=x)


def guide(x, loc=0.0, scale=1.0):
    """A fixed, poor guide: q(z | x) = N(loc, scale² I) for every x."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.full((D,), loc), scale).to_event(1))


def hmc(steps, step=0.1, beta0=0.5):
    elbo = HamiltonianELBO()
    elbo.steps, elbo.step_size, elbo.beta0 = steps, step, beta0
    return elbo


def test_the_tempering_schedule_rises_to_one():
    betas = temperatures(0.3, 6)
    assert betas[0] == pytest.approx(0.3) and betas[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(betas))


def test_the_flows_volume_change_is_the_tempering_alone():
    """log |det ∂(z_K, ρ_K)/∂(z_0, ρ_0)| = d/2 log β_0 (leapfrog preserves volume)."""
    x = torch.randn(1, X)
    elbo = hmc(4, step=0.2, beta0=0.4)

    def mapping(state):
        z, rho = state[:D].unsqueeze(0), state[D:].unsqueeze(0)
        z, rho = elbo.flow(model, (x,), {}, z, rho)
        return torch.cat([z[0], rho[0]])

    jac = torch.autograd.functional.jacobian(mapping, torch.randn(2 * D))
    logabsdet = torch.slogdet(jac).logabsdet.item()
    assert logabsdet == pytest.approx(D / 2 * math.log(0.4), abs=1e-4)


def test_no_steps_is_the_elbo():
    x = torch.randn(8, X)
    torch.manual_seed(0)
    a = hmc(0, beta0=1.0).loss(model, guide, x)
    torch.manual_seed(0)
    b = Trace_ELBO().loss(model, guide, x)
    assert a == pytest.approx(b, rel=1e-6)


def test_the_bound_is_below_log_p_x_and_the_steps_tighten_it():
    torch.manual_seed(0)
    x = torch.randn(16, X) * 1.5
    exact = dist.MultivariateNormal(torch.zeros(X), W @ W.T + SIGMA**2 * torch.eye(X))
    log_px = exact.log_prob(x).sum().item()

    def mean_bound(elbo, n=400):
        return -sum(elbo.loss(model, guide, x) for _ in range(n)) / n

    plain, moved = mean_bound(hmc(0, beta0=1.0)), mean_bound(hmc(8, step=0.15, beta0=0.5))
    assert moved <= log_px + 0.5  # a bound (up to Monte Carlo error over 16 data)
    assert moved > plain + 5  # the steps carry a poor guide's draws towards the posterior


def test_a_run_trains_and_options_are_refused_in_one_line(tmp_path, tiny_mnist_dir, capsys):
    torch.manual_seed(0)
    m, g = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    elbo = make_elbo("hvae-hmc")
    elbo.configure(TrainConfig(elbo="hvae-hmc", hmc_steps=2), 32)
    loss = elbo.differentiable_loss(m, g, torch.bernoulli(torch.full((32, 10), 0.4)))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in g.parameters())
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--train-size", "128", "--test-size"]
    argv += ["32", "--z-dim", "2", "--hidden", "16", "--epochs", "1", "--ll-samples", "5"]
    out = ["--out", str(tmp_path / "run"), "--no-progress"]
    assert cli.main([*argv, "--elbo", "hvae-hmc", "--hmc-steps", "2", *out]) == 0
    for flags, match in [
        (["--hmc-step", "0"], "hmc_step must be a finite number > 0"),
        (["--hmc-beta0", "1.5"], r"hmc_beta0 must lie in \(0, 1\]"),
        (["--beta", "4"], "leave them at 1 and 0"),
    ]:
        line = one_line_error(
            capsys, [*argv, "--elbo", "hvae-hmc", *flags, "--out", str(tmp_path / "x")]
        )
        assert re.search(match, line)
