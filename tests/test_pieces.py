"""Priors, likelihoods, guides and nets: values on hand cases, swapping, and clear errors."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyro_vae import guides, likelihoods, models
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.nets import ACTIVATIONS, MLP
from pyro_vae.train import Trainer


def test_bernoulli_log_prob_hand_case():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    x = torch.tensor([[1.0, 0.0, 1.0]])
    expected = math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.e))
    d = likelihoods.Bernoulli()(logits)
    assert d.batch_shape == (1,) and d.event_shape == (3,)
    assert d.log_prob(x).item() == pytest.approx(expected, rel=1e-6)


def test_continuous_bernoulli_log_prob_hand_case():
    # CB(x; p) = C(p) p^x (1-p)^(1-x), C(p) = 2 atanh(1-2p) / (1-2p)
    p, x = 0.8, 0.3
    norm = 2 * math.atanh(1 - 2 * p) / (1 - 2 * p)
    expected = math.log(norm) + x * math.log(p) + (1 - x) * math.log(1 - p)
    logit = math.log(p / (1 - p))
    d = likelihoods.ContinuousBernoulli()(torch.tensor([[logit]]))
    assert d.log_prob(torch.tensor([[x]])).item() == pytest.approx(expected, rel=1e-5)


def test_normal_likelihood_fixed_and_learned_scale():
    d = likelihoods.Normal(scale=2.0)(torch.zeros(1, 2))
    expected = 2 * (-0.5 * math.log(2 * math.pi * 4.0) - 0.5 * 1.0 / 4.0)
    assert d.log_prob(torch.ones(1, 2)).item() == pytest.approx(expected, rel=1e-6)
    learned = likelihoods.Normal()
    assert [n for n, _ in learned.named_parameters()] == ["log_scale"]
    with pytest.raises(ValueError, match="positive"):
        likelihoods.Normal(scale=0.0)


def test_bernoulli_refuses_grey_levels_with_a_clear_message():
    model = models.VAEModel(4, 2, (8,))
    with pytest.raises(ValueError, match=r"outside the support of the Bernoulli.*binarize"):
        model(torch.full((3, 4), 0.5))


def test_continuous_bernoulli_refuses_values_outside_unit_interval():
    model = models.VAEModel(4, 2, (8,), likelihood=likelihoods.ContinuousBernoulli())
    model(torch.full((3, 4), 0.5))  # grey levels are fine
    with pytest.raises(ValueError, match=r"ContinuousBernoulli.*1/255"):
        model(torch.full((3, 4), 255.0))


def test_nan_data_is_refused():
    model = models.VAEModel(4, 2, (8,), likelihood=likelihoods.Normal(1.0))
    x = torch.zeros(2, 4)
    x[0, 1] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):  # checked before any network runs
        model(x)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(3, 5), r"shape \(batch, 4\); got \(3, 5\)"),
        (torch.zeros(3, 2, 2), r"shape \(batch, 4\)"),
        (torch.zeros(3, 4, dtype=torch.uint8), "float tensor"),
        ([[0.0] * 4], "got list"),
    ],
)
def test_wrong_data_shapes_and_types(x, match):
    with pytest.raises(ValueError, match=match):
        models.VAEModel(4, 2, (8,))(x)


def test_model_needs_data_or_batch_size_and_guide_needs_data():
    with pytest.raises(ValueError, match="batch_size"):
        models.VAEModel(4, 2, (8,))()
    with pytest.raises(ValueError, match="encodes data"):
        guides.NormalGuide(4, 2, (8,))()


def test_user_distribution_as_prior_and_users_three_line_likelihood():
    prior = dist.Laplace(torch.zeros(3), torch.ones(3)).to_event(1)

    def laplace_likelihood(out):
        return dist.Laplace(out, 0.5).to_event(1)

    model = models.VAEModel(6, 3, (16,), prior=prior, likelihood=laplace_likelihood)
    guide = guides.NormalGuide(6, 3, (16,))
    x = torch.randn(20, 6)
    tr = poutine.trace(model).get_trace(x)
    assert isinstance(tr.nodes["z"]["fn"].base_dist, dist.Laplace)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(40)]
    assert losses[-1] < losses[0]


class LearnedNormal(nn.Module):
    """A user's learned prior: p(z) = N(m, diag(exp(s))^2)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(z_dim))
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self):
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


@pytest.mark.parametrize("local", [True, False], ids=["trainer", "svi"])
def test_learned_prior_parameters_are_trained(local):
    prior = LearnedNormal(2)
    model = models.VAEModel(6, 2, (8,), prior=prior, likelihood=likelihoods.Normal(0.5))
    guide = guides.NormalGuide(6, 2, (8,))
    x = torch.randn(64, 6) + 3.0
    if local:
        trainer = Trainer(model, guide, TrainConfig(batch_size=64, lr=1e-2), torch.device("cpu"))
        assert any(p is prior.loc for p in trainer.loss.parameters())
        trainer.fit(x, epochs=20, progress=False)
    else:
        svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
        for _ in range(20):
            svi.step(x)
    assert prior.loc.abs().sum() > 0 and prior.log_scale.abs().sum() > 0


def test_guide_never_sees_the_prior():
    guide = guides.NormalGuide(6, 2, (8,))
    assert not any("prior" in name for name, _ in guide.named_modules())


@pytest.mark.parametrize(
    "prior, error, match",
    [
        (dist.Normal(torch.zeros(3), 1.0), ValueError, r"event_shape \(3,\)"),
        (dist.Normal(torch.zeros(2, 3), 1.0).to_event(1), ValueError, r"batch_shape \(\)"),
        (dist.Normal(torch.zeros(4), 1.0).to_event(1), ValueError, r"got event_shape \(4,\)"),
        ("standard-normal", TypeError, "got str"),
        (lambda: 3, TypeError, "must return a torch Distribution"),
    ],
)
def test_bad_priors(prior, error, match):
    with pytest.raises(error, match=match):
        models.VAEModel(6, 3, (8,), prior=prior)


def test_guide_scale_is_positive_even_for_extreme_inputs():
    guide = guides.NormalGuide(4, 2, (8,))
    with torch.no_grad():
        for p in guide.parameters():
            p.fill_(-50.0)
    q = guide.posterior(torch.ones(3, 4))
    assert (q.base_dist.scale > 0).all() and q.event_shape == (2,)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activations_and_linear_mlp(act):
    net = MLP(3, (5, 7), 2, act)
    assert net(torch.zeros(4, 3)).shape == (4, 2)
    assert isinstance(net[1], ACTIVATIONS.choose(act))
    assert len(MLP(3, (), 2)) == 1  # hidden=() is one affine map


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; choose one of"):
        MLP(3, (4,), 2, "gelu")
    with pytest.raises(ValueError, match=r"unknown likelihood 'poisson'; choose one of"):
        ModelConfig(likelihood="poisson")
    with pytest.raises(ValueError, match=r"unknown prior 'vamp'"):
        ModelConfig(prior="vamp")


def test_params_per_pixel_widens_the_decoder():
    class TwoParam(nn.Module):
        params_per_pixel = 2

        def forward(self, out):
            loc, log_scale = out.chunk(2, -1)
            return dist.Normal(loc, log_scale.exp()).to_event(1)

    model = models.VAEModel(5, 2, (8,), likelihood=TwoParam())
    assert model.decoder.out_dim == 10
    tr = poutine.trace(model).get_trace(torch.randn(3, 5))
    assert tr.nodes["x"]["fn"].event_shape == (5,)


def test_generation_and_decode():
    model = models.VAEModel(6, 2, (8,))
    x = model(batch_size=7)
    assert x.shape == (7, 6)
    assert model.decode(torch.zeros(1, 2)).mean.shape == (1, 6)
    assert pyro.get_param_store().keys()  # default (non-local) mode registers the params


def test_delta_guide_with_flat_prior_is_a_plain_autoencoder():
    import torch.nn.functional as F

    from pyro_vae import evaluate
    from pyro_vae.config import ModelConfig

    model, guide = build(ModelConfig(x_dim=20, z_dim=2, hidden=(8,), prior="flat", guide="delta"))
    x = torch.bernoulli(torch.rand(6, 20))
    loss = Trace_ELBO()(model, guide)(x)
    reconstruction = F.binary_cross_entropy_with_logits(
        model.decoder(guide.encoder(x)), x, reduction="sum"
    )
    assert loss.item() == pytest.approx(reconstruction.item(), rel=1e-6)
    # with a standard Normal prior the same guide gives MAP: the code's log-prior is added
    map_model, _ = build(ModelConfig(x_dim=20, z_dim=2, hidden=(8,), guide="delta"))
    map_model.decoder.load_state_dict(model.decoder.state_dict())
    log_prior = dist.Normal(0, 1).log_prob(guide.encoder(x)).sum()
    map_loss = Trace_ELBO()(map_model, guide)(x)
    assert map_loss.item() == pytest.approx((reconstruction - log_prior).item(), rel=1e-5)
    assert evaluate.point_estimate(guide, x)
    with pytest.raises(ValueError, match="point estimate"):
        evaluate.log_likelihood(model, guide, x, 10)
    with pytest.raises(NotImplementedError):
        model(batch_size=3)  # an improper prior cannot be sampled


def test_discretized_logistic_is_a_distribution_over_256_levels():
    from pyro_vae.likelihoods import DiscretizedLogisticDistribution

    levels = torch.arange(256) / 255
    for loc, log_scale in ((0.4, -3.0), (-0.2, -1.0), (0.99, -6.0), (0.5, -7.0)):
        d = DiscretizedLogisticDistribution(torch.tensor(loc), torch.tensor(log_scale))
        probs = d.log_prob(levels).exp()
        assert probs.sum().item() == pytest.approx(1.0, abs=1e-4)
        assert d.mean.item() == pytest.approx((probs * levels).sum().item(), abs=1e-3)
    # hand case: an interior bin is sigmoid((x + h - m)/s) - sigmoid((x - h - m)/s)
    d = DiscretizedLogisticDistribution(torch.tensor(0.3), torch.tensor(math.log(0.05)))
    x, h = 77 / 255, 0.5 / 255
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = math.log(sig((x + h - 0.3) / 0.05) - sig((x - h - 0.3) / 0.05))
    assert d.log_prob(torch.tensor(x)).item() == pytest.approx(expected, rel=1e-4)
    assert set((d.sample((50,)) * 255).round().unique().tolist()) <= set(range(256))


@pytest.mark.parametrize(
    "likelihood, data, ok",
    [
        (likelihoods.DiscretizedLogistic(), torch.tensor([[0.0, 17 / 255, 1.0]]), True),
        (likelihoods.DiscretizedLogistic(), torch.tensor([[0.5, 0.1, 0.2]]), False),
        (likelihoods.Laplace(), torch.tensor([[0.5, -3.0, 2.0]]), True),
        (likelihoods.Laplace(), torch.tensor([[0.5, math.inf, 2.0]]), False),
        (likelihoods.NormalPixelScale(), torch.tensor([[0.5, -3.0, 2.0]]), True),
        (likelihoods.NormalPixelScale(), torch.tensor([[math.nan, 0.0, 0.0]]), False),
    ],
)
def test_likelihood_support_checks(likelihood, data, ok):
    model = models.VAEModel(3, 2, (8,), likelihood=likelihood)
    if ok:
        assert torch.isfinite(poutine.trace(model).get_trace(data).log_prob_sum())
    else:
        with pytest.raises(ValueError, match="outside the support|NaN or inf"):
            model(data)


def test_laplace_and_pixel_normal_log_probs():
    out = torch.tensor([[0.2, -0.1]])
    lap = likelihoods.Laplace()
    with torch.no_grad():
        lap.log_scale.fill_(math.log(0.5))
    x = torch.tensor([[0.0, 0.4]])
    expected = sum(-math.log(2 * 0.5) - abs(a - b) / 0.5 for a, b in ((0.0, 0.2), (0.4, -0.1)))
    assert lap(out).log_prob(x).item() == pytest.approx(expected, rel=1e-6)
    raw = torch.tensor([[0.2, -0.1, 0.0, 1.0]])  # (loc_1, loc_2, raw_1, raw_2)
    sd = [math.log1p(math.exp(0.0)) + 1e-3, math.log1p(math.exp(1.0)) + 1e-3]
    expected = sum(
        -0.5 * math.log(2 * math.pi * s**2) - (a - m) ** 2 / (2 * s**2)
        for a, m, s in ((0.0, 0.2, sd[0]), (0.4, -0.1, sd[1]))
    )
    d = likelihoods.NormalPixelScale()(raw)
    assert d.event_shape == (2,)
    assert d.log_prob(x).item() == pytest.approx(expected, rel=1e-5)


def test_full_covariance_guide_builds_a_correlated_posterior():
    guide = guides.FullCovGuide(6, 3, (8,))
    q = guide.posterior(torch.rand(4, 6))
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    tril = q.scale_tril
    assert torch.equal(tril, tril.tril()) and (tril.diagonal(dim1=-2, dim2=-1) > 0).all()
    assert tril[..., 1, 0].abs().sum() > 0  # off-diagonal terms are predicted


def test_iaf_guide_density_matches_change_of_variables():
    torch.manual_seed(0)
    guide = guides.IAFGuide(6, 3, (8,), flows=2, context_dim=4, flow_hidden=8)
    x = torch.rand(5, 6)
    q = guide.posterior(x)
    z = q.rsample()
    # log q(z) = log q0(z0) - sum log|det df/dz|, evaluated through Pyro's transforms
    z0 = z
    log_det = torch.zeros(5)
    for t in reversed(q.transforms):
        prev = t.inv(z0)
        log_det = log_det + t.log_abs_det_jacobian(prev, z0)
        z0 = prev
    assert torch.allclose(q.log_prob(z), q.base_dist.log_prob(z0) - log_det, atol=1e-4)


def test_meanfield_elbo_refuses_a_flow_guide():
    from pyro_vae.config import ModelConfig

    model, guide = build(ModelConfig(x_dim=6, z_dim=2, hidden=(8,), guide="iaf"))
    with pytest.raises(ValueError, match=r"needs a mean-field guide.*--elbo trace"):
        Trainer(model, guide, TrainConfig(elbo="meanfield"), torch.device("cpu"))


@pytest.mark.parametrize("shape", [(28, 28), (28, 20), (3, 32, 32), (3, 9, 11)])
def test_conv_nets_shapes_and_particle_dims(shape):
    from pyro_vae import evaluate
    from pyro_vae.config import ModelConfig
    from pyro_vae.nets import ConvDecoder, ConvEncoder

    x_dim = math.prod(shape)
    for residual in (False, True):
        assert ConvEncoder(shape, 7, residual=residual)(torch.rand(3, x_dim)).shape == (3, 7)
        decoder = ConvDecoder(4, shape, 2, residual=residual)
        assert decoder(torch.randn(5, 3, 4)).shape == (5, 3, 2 * x_dim)
    model, guide = build(
        ModelConfig(x_dim=x_dim, z_dim=4, hidden=(32,), net="conv", image_shape=shape)
    )
    x = torch.bernoulli(torch.rand(6, x_dim) * 0.3)
    ll = evaluate.log_likelihood(model, guide, x, num_samples=7)  # (particles, data, z) codes
    assert ll.shape == (6,) and torch.isfinite(ll).all()
    with pytest.raises(ValueError, match="sides of at least 2"):
        build(ModelConfig(x_dim=6, z_dim=2, net="conv", image_shape=(1, 6)))
    with pytest.raises(ValueError, match="unknown net 'rnn'"):
        ModelConfig(net="rnn")
