"""The hierarchical VAE (two stochastic layers) and DReG gradients for IWAE."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
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
from pyro.nn import PyroModule
from pyro.optim import Adam

from pyro_vae import evaluate, likelihoods, models, priors
from pyro_vae.guides import BottomUpGuide, LadderGuide
from pyro_vae.objectives import DReG_ELBO, ScaleLatents
from pyro_vae.runtime import module_local_params

SIZES = {"z1_dim": 6, "z2_dim": 3, "hidden": (32,), "top_hidden": (16,)}


def pair(kind: str) -> tuple[models.HierarchicalModel, torch.nn.Module]:
    model = models.HierarchicalModel(784, **SIZES)
    if kind == "ladder":
        return model, LadderGuide(784, model.top_down, **SIZES)
    return model, BottomUpGuide(784, **SIZES)


ELBOS = [
    Trace_ELBO(),
    TraceMeanField_ELBO(),
    TraceGraph_ELBO(),
    Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
    RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1),
    DReG_ELBO(num_particles=5),
    JitTrace_ELBO(ignore_jit_warnings=True),
]


@pytest.mark.parametrize("kind", ["bottom-up", "ladder"])
@pytest.mark.parametrize("elbo", ELBOS, ids=lambda e: type(e).__name__ + str(e.num_particles))
def test_every_elbo_trains_the_pair_under_plain_svi(kind, elbo, binary_batch):
    if kind == "bottom-up" and isinstance(elbo, TraceMeanField_ELBO):
        pytest.skip("not mean-field: sites in the opposite order (the trainer refuses it)")
    model, guide = pair(kind)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), elbo)
    losses = [svi.step(binary_batch) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])


def test_mean_field_elbo_is_refused_for_the_bottom_up_guide_only():
    from pyro_vae.config import TrainConfig
    from pyro_vae.train import Trainer

    config = TrainConfig(elbo="meanfield")
    with pytest.raises(ValueError, match="needs a mean-field guide"):
        Trainer(*pair("bottom-up"), config, torch.device("cpu"))
    Trainer(*pair("ladder"), config, torch.device("cpu"))  # same site order: analytic KL holds


@pytest.mark.parametrize("kind", ["bottom-up", "ladder"])
def test_sites_and_predictive(kind, binary_batch):
    model, guide = pair(kind)
    gt = poutine.trace(guide).get_trace(binary_batch)
    mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(binary_batch)
    assert set(gt.stochastic_nodes) - {"data"} == {"z1", "z2"}
    assert [n for n in mt.stochastic_nodes if n != "data"] == ["z2", "z1"]
    assert mt.observation_nodes == ["x"]
    prior = Predictive(model, num_samples=2)(batch_size=5)
    assert prior["z2"].shape == (2, 5, 3) and prior["z1"].shape == (2, 5, 6)
    assert prior["x"].shape == (2, 5, 784)
    post = Predictive(poutine.uncondition(model), guide=guide, num_samples=3)(binary_batch[:4])
    assert post["x"].shape == (3, 4, 784) and post["z1"].shape == (3, 4, 6)
    point = guide.point(binary_batch[:4])
    assert point["z1"].shape == (4, 6) and point["z2"].shape == (4, 3)


def test_ladder_merges_precisions_and_shares_the_model_top_down():
    loc, scale = LadderGuide.merge(
        (torch.tensor([0.0]), torch.tensor([1.0])), (torch.tensor([3.0]), torch.tensor([1.0]))
    )
    assert torch.allclose(loc, torch.tensor([1.5])) and torch.allclose(
        scale, torch.tensor([0.5**0.5])
    )
    loc, _ = LadderGuide.merge(
        (torch.tensor([0.0]), torch.tensor([0.01])), (torch.tensor([3.0]), torch.tensor([10.0]))
    )
    assert abs(loc.item()) < 1e-4  # a confident bottom-up estimate dominates
    model, guide = pair("ladder")
    assert not any(n.startswith("top_down") for n, _ in guide.named_parameters())
    guide(torch.bernoulli(torch.rand(4, 784)))  # runs
    x = torch.bernoulli(torch.rand(4, 784))
    loss = Trace_ELBO().differentiable_loss(model, guide, x)
    loss.backward()
    assert model.top_down.net[0].weight.grad is not None  # q(z1|z2,x) reads p(z1|z2)


def test_scale_latents_reaches_both_layers(binary_batch):
    model, guide = pair("bottom-up")
    with ScaleLatents(0.25):
        gt = poutine.trace(guide).get_trace(binary_batch)
        mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(binary_batch)
    for trace in (gt, mt):
        assert trace.nodes["z1"]["scale"] == 0.25 and trace.nodes["z2"]["scale"] == 0.25
    assert mt.nodes["x"]["scale"] == 1.0


class LinearGaussian(PyroModule):
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, diag s1²), x | z1 ~ N(B z1 + b, s² I): x is Gaussian."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.A, self.a = torch.randn(2, 1, generator=g), torch.randn(2, generator=g)
        self.s1 = torch.tensor([0.7, 1.3])
        self.B, self.b = torch.randn(3, 2, generator=g), torch.randn(3, generator=g)
        self.s = 0.5

    def marginal(self) -> dist.MultivariateNormal:
        cov1 = self.A @ self.A.T + torch.diag(self.s1**2)
        cov = self.B @ cov1 @ self.B.T + self.s**2 * torch.eye(3)
        return dist.MultivariateNormal(self.B @ self.a + self.b, cov)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ self.A.T + self.a, self.s1).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.B.T + self.b, self.s).to_event(1), obs=x)


class ExactPosterior(PyroModule):
    """q(z1 | x) = p(z1 | x), q(z2 | z1) = p(z2 | z1): every importance weight equals p(x)."""

    def __init__(self, m: LinearGaussian) -> None:
        super().__init__()
        cov1 = m.A @ m.A.T + torch.diag(m.s1**2)
        mean1 = m.a
        cov_x = m.B @ cov1 @ m.B.T + m.s**2 * torch.eye(3)
        self.gain1 = cov1 @ m.B.T @ torch.linalg.inv(cov_x)  # p(z1 | x): Gaussian conditioning
        self.mean1, self.mean_x = mean1, m.B @ m.a + m.b
        self.post_cov1 = cov1 - self.gain1 @ m.B @ cov1
        self.gain2 = m.A.T @ torch.linalg.inv(cov1)  # p(z2 | z1)
        self.post_cov2 = torch.eye(1) - self.gain2 @ m.A
        self.mean1_z2 = m.a

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc1 = self.mean1 + (x - self.mean_x) @ self.gain1.T
            z1 = pyro.sample("z1", dist.MultivariateNormal(loc1, self.post_cov1))
            loc2 = (z1 - self.mean1_z2) @ self.gain2.T
            pyro.sample("z2", dist.MultivariateNormal(loc2, self.post_cov2))


def test_importance_estimate_with_two_latent_layers_matches_the_closed_form():
    model = LinearGaussian()
    x = model.marginal().sample((50,))
    exact = model.marginal().log_prob(x)
    guide = ExactPosterior(model)
    estimate = evaluate.log_likelihood(model, guide, x, num_samples=3)
    assert torch.allclose(estimate, exact, atol=1e-4)  # exact weights: any k is exact
    elbo = evaluate.elbo(model, guide, x)
    assert abs(elbo - exact.mean().item()) < 1e-4  # KL(q || p(z|x)) = 0

    class Wider(PyroModule):  # mean-field, 1.5 times wider than the exact conditionals
        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                loc1 = guide.mean1 + (x - guide.mean_x) @ guide.gain1.T
                sd1 = 1.5 * guide.post_cov1.diagonal().sqrt()
                z1 = pyro.sample("z1", dist.Normal(loc1, sd1).to_event(1))
                loc2 = (z1 - guide.mean1_z2) @ guide.gain2.T
                sd2 = 1.5 * guide.post_cov2.diagonal().sqrt()
                pyro.sample("z2", dist.Normal(loc2, sd2).to_event(1))

    torch.manual_seed(0)
    rough = evaluate.log_likelihood(model, Wider(), x, num_samples=20000)
    assert (rough - exact).abs().mean() < 0.015 and (rough - exact).abs().max() < 0.06
    assert evaluate.elbo(model, Wider(), x) < exact.mean().item() - 0.1


def test_hierarchical_model_prior_is_swappable_and_checked():
    model = models.HierarchicalModel(784, prior=priors.Laplace(50))
    assert isinstance(model.prior(), dist.Independent)
    with pytest.raises(ValueError, match="event_shape"):
        models.HierarchicalModel(784, z2_dim=50, prior=priors.StandardNormal(7))
    model = models.HierarchicalModel(20, 4, 2, (8,), (8,), likelihood=likelihoods.Normal())
    assert model.decode(torch.zeros(3, 4)).batch_shape == (3,)


# -- DReG ----------------------------------------------------------------------------------


def _grad_variance(elbo, model, guide, x, repeats: int = 40) -> float:
    draws = []
    with module_local_params(model, guide):
        for _ in range(repeats):
            for p in (*model.parameters(), *guide.parameters()):
                p.grad = None
            elbo.loss_and_grads(model, guide, x)
            draws.append(torch.cat([p.grad.flatten() for p in guide.parameters()]))
    return torch.stack(draws).var(0).sum().item()


@pytest.mark.parametrize("kind", ["bottom-up", "ladder"])
def test_dreg_value_is_the_iwae_bound_and_its_encoder_gradient_varies_less(kind):
    torch.manual_seed(0)
    model, guide = pair(kind)
    x = torch.bernoulli(torch.rand(16, 784, generator=torch.Generator().manual_seed(1)))
    iwae = RenyiELBO(alpha=0, num_particles=20, vectorize_particles=True, max_plate_nesting=1)
    with module_local_params(model, guide):
        torch.manual_seed(3)
        plain = iwae.loss(model, guide, x)
        torch.manual_seed(3)
        dreg = DReG_ELBO(num_particles=20).loss_and_grads(model, guide, x)
    assert dreg == pytest.approx(plain, rel=1e-6)
    torch.manual_seed(4)
    v_iwae = _grad_variance(iwae, model, guide, x)
    torch.manual_seed(4)
    v_dreg = _grad_variance(DReG_ELBO(num_particles=20), model, guide, x)
    assert v_dreg < 0.7 * v_iwae, (v_dreg, v_iwae)


def test_dreg_gives_the_model_the_iwae_gradient():
    torch.manual_seed(0)
    model, guide = pair("bottom-up")
    x = torch.bernoulli(torch.rand(8, 784))
    grads = []
    for elbo in (
        RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1),
        DReG_ELBO(num_particles=6),
    ):
        for p in (*model.parameters(), *guide.parameters()):
            p.grad = None
        with module_local_params(model, guide):
            torch.manual_seed(5)
            elbo.loss_and_grads(model, guide, x)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-3)


def test_dreg_refuses_a_prior_that_reads_the_guide():
    from pyro_vae.guides import NormalGuide

    guide = NormalGuide(784, 4, (16,))
    model = models.VAEModel(784, 4, (16,), prior=priors.VampPrior(guide, 784, 5))
    with pytest.raises(ValueError, match="VampPrior"), module_local_params(model, guide):
        DReG_ELBO(3).loss_and_grads(model, guide, torch.bernoulli(torch.rand(4, 784)))


def test_ladder_batch_norm_trains_on_one_datum_and_evaluates_with_running_averages():
    model, guide = pair("ladder")
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in guide.d1.modules())
    x = torch.bernoulli(torch.rand(40, 784) * 0.3)
    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    for batch in (x[:32], x[32:33], x[33:]):  # a batch of one datum included
        assert math.isfinite(svi.step(batch))
    assert guide.training and guide.d1.training  # the one-datum step left the modes alone
    # evaluation (runtime.inference) uses the running averages: a datum's code does not
    # depend on the batch it comes in
    from pyro_vae.runtime import inference

    with inference(model, guide):
        alone = guide.point(x[:1])["z2"]
        in_batch = guide.point(x)["z2"][:1]
    assert torch.allclose(alone, in_batch, atol=1e-6)
    assert guide.training  # restored
