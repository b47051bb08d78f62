"""The contract in the README, exactly as written, and that every Pyro ELBO accepts the pair."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from pyro.optim import Adam

from pyro_vae import guides, models
from tests.conftest import REPO


def _readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_readme_contract(binary_batch):
    """The contract block of README.md, run exactly as written, trains the model."""
    contract = _readme_blocks()[0]
    assert 'svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())' in contract
    scope: dict = {}
    exec(contract, scope)
    loss, svi = scope["loss"], scope["svi"]
    assert math.isfinite(loss) and loss > 0  # -ELBO of binary data is positive
    losses = [svi.step(binary_batch) for _ in range(30)]
    assert sum(losses[-5:]) < sum(losses[:5]) < 5 * loss
    # SVI trained the modules' own parameters, through Pyro's param store
    names = set(pyro.get_param_store().keys())
    assert {"decoder$$$0.weight", "encoder$$$0.weight"} <= names


def test_model_and_guide_share_the_latent_site(binary_batch):
    model, guide = models.VAEModel(784, 4, (16,)), guides.NormalGuide(784, 4, (16,))
    gt = poutine.trace(guide).get_trace(binary_batch)
    mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(binary_batch)
    assert [n for n in gt.stochastic_nodes if n != "data"] == ["z"]
    assert [n for n in mt.stochastic_nodes if n != "data"] == ["z"]
    assert mt.observation_nodes == ["x"]
    assert torch.equal(mt.nodes["z"]["value"], gt.nodes["z"]["value"])
    assert mt.nodes["x"]["fn"].event_shape == (784,)
    assert mt.nodes["z"]["cond_indep_stack"][0].name == "data"


def test_prior_and_posterior_predictive(binary_batch):
    model, guide = models.VAEModel(784, 4, (16,)), guides.NormalGuide(784, 4, (16,))
    prior_draws = Predictive(model, num_samples=1)(batch_size=6)
    assert prior_draws["x"].shape == (1, 6, 784) and prior_draws["z"].shape == (1, 6, 4)
    assert set(prior_draws["x"].unique().tolist()) <= {0.0, 1.0}
    post = Predictive(
        poutine.uncondition(model), guide=guide, num_samples=3, return_sites=["x", "z"]
    )(binary_batch[:5])
    assert post["x"].shape == (3, 5, 784)
    # x was resampled, not copied from the observation
    assert not torch.equal(post["x"][0], binary_batch[:5])


ELBOS = [
    Trace_ELBO(),
    TraceMeanField_ELBO(),
    TraceGraph_ELBO(),
    Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
    RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1),
    JitTrace_ELBO(ignore_jit_warnings=True),
]


@pytest.mark.parametrize("elbo", ELBOS, ids=lambda e: type(e).__name__ + str(e.num_particles))
def test_every_elbo_accepts_the_pair(elbo, binary_batch):
    model, guide = models.VAEModel(784, 4, (32,)), guides.NormalGuide(784, 4, (32,))
    svi = SVI(model, guide, Adam({"lr": 1e-2}), elbo)
    losses = [svi.step(binary_batch) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_svi_with_users_own_torch_optimizer(binary_batch):
    model, guide = models.VAEModel(784, 4, (32,)), guides.NormalGuide(784, 4, (32,))
    loss_fn = Trace_ELBO()(model, guide)  # an nn.Module
    opt = torch.optim.SGD(loss_fn.parameters(), lr=1e-4)
    first = loss_fn(binary_batch)
    for _ in range(10):
        opt.zero_grad()
        loss = loss_fn(binary_batch)
        loss.backward()
        opt.step()
    assert loss.item() < first.item()


def test_readme_code_blocks_run(binary_batch):
    """The README's generation and swapping examples run as written, after the contract."""
    contract, generating, swapping = _readme_blocks()[:3]
    scope: dict = {}
    exec(contract, scope)
    exec(generating, scope)
    assert scope["means"].shape == (64, 784) and scope["post"]["x"].shape == (8, 4, 784)
    exec(swapping, scope)
    model = scope["model"]
    pyro.clear_param_store()
    svi = SVI(model, guides.NormalGuide(784, 50), Adam({"lr": 1e-3}), Trace_ELBO())
    assert math.isfinite(svi.step(torch.rand(16, 784)))
    assert any(name == "prior.loc" for name, _ in model.named_parameters())


def test_every_readme_python_block_runs_as_written(tiny_mnist_dir, tmp_path, monkeypatch):
    """Every ```python block of README.md runs as written on its own, each in a fresh
    namespace with nothing injected (self-contained: a reader can paste any one of them; the
    data: the made-up MNIST files; the runs: a temporary folder)."""
    monkeypatch.setenv("PYRO_VAE_DATA", str(tiny_mnist_dir))
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(_readme_blocks()):
        pyro.clear_param_store()
        scope: dict = {}
        try:
            exec(compile(block, f"README block {i}", "exec"), scope)
        except Exception as e:
            raise AssertionError(f"README python block {i} fails: {e!r}\n{block}") from e
