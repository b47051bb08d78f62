"""The priors: shapes, values on hand cases, learning, and that each works with any guide."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae import guides, priors
from pyro_vae.config import GUIDES, ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.train import Trainer


@pytest.mark.parametrize("name", sorted(set(priors.PRIORS) - {"flat"}))
@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_every_prior_with_every_guide_trains(name, guide):
    if name == "vampprior" and guide in ("delta", "iaf", "flow"):
        with pytest.raises(ValueError, match="use --guide normal or fullcov"):
            build(ModelConfig(x_dim=12, z_dim=3, prior=name, guide=guide))
        return
    if (name == "spherical") != (guide == "spherical"):  # z on the sphere, or in R^d
        with pytest.raises(ValueError, match="put z on the unit sphere"):
            build(ModelConfig(x_dim=12, z_dim=3, prior=name, guide=guide, prior_components=4))
        return
    model, g = build(
        ModelConfig(x_dim=12, z_dim=3, hidden=(16,), prior=name, guide=guide, prior_components=4)
    )
    d = model.prior()
    assert d.event_shape == (3,) and d.batch_shape == ()
    z = d.sample((5,))
    assert z.shape == (5, 3) and torch.isfinite(d.log_prob(z)).all()
    x = torch.bernoulli(torch.rand(64, 1).expand(64, 12).contiguous())
    trainer = Trainer(model, g, TrainConfig(batch_size=32, lr=1e-2), torch.device("cpu"))
    history = trainer.fit(x, 4, test=x, progress=False)
    assert all(math.isfinite(r["test_elbo"]) for r in history)
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]


def test_laplace_and_student_t_values():
    z = torch.tensor([[0.5, -1.0]])
    b = 0.5**0.5
    expected = sum(-math.log(2 * b) - abs(v) / b for v in (0.5, -1.0))
    assert priors.Laplace(2)().log_prob(z).item() == pytest.approx(expected, rel=1e-6)
    assert priors.Laplace(2)().variance.tolist() == pytest.approx([1.0, 1.0])
    t = priors.StudentT(2, df=5.0)()
    nu = 5.0
    one = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    expected = sum(one - (nu + 1) / 2 * math.log(1 + v**2 / nu) for v in (0.5, -1.0))
    assert t.log_prob(z).item() == pytest.approx(expected, rel=1e-6)


def test_mixture_of_gaussians_is_the_weighted_sum():
    prior = priors.MixtureOfGaussians(2, components=3)
    z = torch.randn(4, 2)
    weights = torch.softmax(prior.logits, 0)
    comps = torch.distributions.Normal(prior.loc, prior.log_scale.exp())
    dens = (comps.log_prob(z[:, None, :]).sum(-1).exp() * weights).sum(1)
    assert torch.allclose(prior().log_prob(z), dens.log(), atol=1e-5)


def test_vampprior_is_the_mean_of_the_guides_posteriors():
    guide = guides.NormalGuide(6, 2, (8,))
    prior = priors.VampPrior(guide, 6, components=3)
    z = torch.randn(5, 2)
    q = guide.posterior(prior.pseudo_inputs())
    dens = q.log_prob(z[:, None, :]).exp().mean(1)
    assert torch.allclose(prior().log_prob(z), dens.log(), atol=1e-5)
    assert prior.pseudo_inputs().min() >= 0 and prior.pseudo_inputs().max() <= 1
    # the guide is shared, not owned: its weights are not saved twice
    assert [k for k in prior.state_dict()] == ["pseudo_logits"]


def test_learned_priors_move_during_training():
    model, guide = build(
        ModelConfig(x_dim=12, z_dim=2, hidden=(16,), prior="mog", prior_components=3)
    )
    before = model.prior.loc.detach().clone()
    x = torch.bernoulli(torch.rand(64, 12))
    Trainer(model, guide, TrainConfig(batch_size=32, lr=1e-2), torch.device("cpu")).fit(
        x, 3, progress=False
    )
    assert not torch.equal(before, model.prior.loc)


def test_diagonal_normal_mixture_matches_the_generic_log_prob():
    """The matrix-product log-density equals MixtureSameFamily's, values and gradients."""
    import pyro.distributions as dist

    from pyro_vae.priors import DiagonalNormalMixture

    torch.manual_seed(0)
    loc = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
    log_scale = (torch.randn(30, 6, dtype=torch.float64) * 0.5 - 1).requires_grad_()
    logits = torch.randn(30, dtype=torch.float64)

    def mixture(cls):
        return cls(dist.Categorical(logits=logits), dist.Normal(loc, log_scale.exp()).to_event(1))

    z = torch.randn(7, 5, 6, dtype=torch.float64) * 2
    fast, slow = (
        mixture(DiagonalNormalMixture).log_prob(z),
        mixture(dist.MixtureSameFamily).log_prob(z),
    )
    assert fast.shape == (7, 5) and torch.allclose(fast, slow, atol=1e-10)
    for a, b in zip(
        torch.autograd.grad(fast.sum(), [loc, log_scale]),
        torch.autograd.grad(slow.sum(), [loc, log_scale]),
        strict=True,
    ):
        assert torch.allclose(a, b, atol=1e-8)
    # float32 values keep their dtype; a full-covariance component falls back to the generic one
    assert mixture(DiagonalNormalMixture).log_prob(z.float()).dtype == torch.float32
    mvn = dist.MultivariateNormal(torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2))
    m = DiagonalNormalMixture(dist.Categorical(logits=torch.zeros(3)), mvn)
    assert torch.allclose(
        m.log_prob(torch.zeros(4, 2)),
        dist.MixtureSameFamily(m.mixture_distribution, mvn).log_prob(torch.zeros(4, 2)),
    )


def test_diagonal_normal_mixture_fast_path_survives_plate_expansion():
    """Pyro's plates expand the prior to the batch shape; the expanded mixture keeps the
    matrix-product log-density (same values as the generic one)."""
    import pyro.distributions as dist

    from pyro_vae.priors import DiagonalNormalMixture

    comps = dist.Normal(torch.randn(5, 3), torch.rand(5, 3) + 0.5).to_event(1)
    mix = DiagonalNormalMixture(dist.Categorical(logits=torch.randn(5)), comps)
    expanded = mix.expand((4, 2))
    assert isinstance(expanded, DiagonalNormalMixture)
    z = torch.randn(4, 2, 3)
    generic = dist.MixtureSameFamily(mix.mixture_distribution, comps).expand((4, 2)).log_prob(z)
    assert torch.allclose(expanded.log_prob(z), generic, atol=1e-5)
    assert expanded.log_prob(z[0, 0]).shape == (4, 2)  # one value broadcast over the batch
