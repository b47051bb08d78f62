"""The flow guide (``--guide flow --flow planar:8``): Pyro's transforms stacked on the amortized
Normal. Shapes, a normalised density (an importance-sampling check independent of the
log-determinants), training through SVI, its options refused in one line, a CLI run scored by
importance sampling."""

from __future__ import annotations

import json
import math
import re

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_vae import cli
from pyro_vae.config import ModelConfig
from pyro_vae.guides import GUIDES, FlowGuide
from pyro_vae.guides.flow import FLOWS, parse_flow
from pyro_vae.kinds import build

from .test_takehome import one_line_error

X_DIM, Z_DIM = 12, 2


def pair(flow: str):
    torch.manual_seed(0)
    config = ModelConfig(x_dim=X_DIM, z_dim=Z_DIM, hidden=(16,), guide="flow", flow=flow)
    return build(config)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_flow_samples_scores_and_trains(name):
    model, guide = pair(f"{name}:2")
    assert isinstance(guide, FlowGuide) and "flow" in GUIDES and not guide.mean_field
    assert len(guide.transforms) == 2 and guide.conditioned == [FLOWS[name][1]] * 2
    x = torch.bernoulli(torch.full((5, X_DIM), 0.3))
    z = guide(x)
    assert z.shape == (5, Z_DIM) and guide.point(x).shape == (5, Z_DIM)
    q = guide.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (Z_DIM,)
    assert torch.isfinite(q.log_prob(q.rsample())).all()
    # the ELBO's gradient reaches the transforms' parameters (the context networks too)
    pyro.clear_param_store()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    before = [p.detach().clone() for p in guide.transforms.parameters()]
    losses = [svi.step(x) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    after = list(guide.transforms.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_the_flow_density_is_normalised(name):
    """E_q[p(z) / q(z)] = 1 for any normalised p: with p a Gaussian narrower than q (so the
    weights have a finite variance), a wrong log-determinant anywhere would move the mean."""
    _, guide = pair(f"{name}:3")
    with torch.no_grad():
        for t in guide.transforms.parameters():  # away from the identity
            t.add_(0.1 * torch.randn_like(t))
        q = guide.posterior(torch.bernoulli(torch.full((1, X_DIM), 0.3)))
        z = q.rsample((40_000,))
        log_q = q.log_prob(z)
        flat = z.reshape(-1, Z_DIM)
        p = torch.distributions.MultivariateNormal(
            flat.mean(0), covariance_matrix=0.1 * torch.cov(flat.T)
        )
        w = (p.log_prob(z) - log_q).exp()
    stderr = w.std() / math.sqrt(w.numel())
    assert abs(w.mean().item() - 1) < max(0.05, 5 * stderr.item())


def test_flow_specs_are_parsed_and_refused_in_one_line():
    assert parse_flow("planar:8") == [("planar", 8)]
    assert parse_flow("householder:2, planar") == [("householder", 2), ("planar", 1)]
    for bad, match in (
        ("planar:0", "from 1 to 64 transforms in all"),
        ("planar:65", "from 1 to 64 transforms in all"),
        ("bogus:2", "each part is TYPE or TYPE:COUNT with TYPE one of planar"),
        ("planar-2", "each part is TYPE or TYPE:COUNT"),
    ):
        with pytest.raises(ValueError, match=match):
            ModelConfig(guide="flow", flow=bad)
    with pytest.raises(ValueError, match="flow_context must be"):
        ModelConfig(guide="flow", flow_context=0)


@pytest.mark.parametrize(
    "flag, value, match",
    [
        ("--flow", "planar:0", "from 1 to 64 transforms in all"),
        ("--flow", "moebius", "with TYPE one of planar"),
        ("--flow-width", "0", "flow_width must be"),
    ],
)
def test_each_option_is_refused_in_one_line_by_the_cli(flag, value, match, capsys):
    assert re.search(match, one_line_error(capsys, ["train", "--guide", "flow", flag, value]))


def test_a_cli_run_trains_and_is_scored_by_importance_sampling(tmp_path, tiny_mnist_dir):
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(tiny_mnist_dir), "--guide", "flow", "--flow", "radial:2"]
    tiny = ["--z-dim", "2", "--hidden", "16", "--epochs", "1", "--ll-samples", "20"]
    tiny += ["--train-size", "256", "--test-size", "64"]
    assert cli.main([*argv, *tiny, "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert math.isfinite(result["log_likelihood"]) and result["importance_samples"] == 20
    assert result["log_likelihood"] > result["elbo"] - 1.0  # IS tightens the ELBO (noisy)
    assert 'flow = "radial:2"' in (out / "config.toml").read_text()
