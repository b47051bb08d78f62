"""--centred: 8-bit data in [-1, 1] on both sides, the default for the 256-level likelihoods of
the VAE; the same masses of the 256 levels, and runs saved before it read [0, 1] as they did."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae import kinds, likelihoods
from pyro_vae.config import ModelConfig, from_dict
from pyro_vae.nets import MLP, ConvEncoder


def levels(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 12)).float() / 255


@pytest.mark.parametrize("name", ["logistic256", "logistic-mixture"])
def test_centred_logistics_give_the_masses_of_the_same_logistic_in_zero_one(name):
    x = levels(5)
    centred = kinds.kind_of("vae").likelihood(ModelConfig(likelihood=name, x_dim=12, centred=True))
    plain = kinds.kind_of("vae").likelihood(ModelConfig(likelihood=name, x_dim=12, centred=False))
    k = centred.params_per_pixel
    out = torch.randn(5, 12 * k)
    # the same logistic given in [0, 1] coordinates: location (m + 1) / 2, scale s / 2;
    # outputs are channel-major: (logits,) locations, log-scales, c of each
    c = k // 2 if name == "logistic256" else k // 3
    params = out.unflatten(-1, (k, 12)).clone()
    locs, scales = slice(k - 2 * c, k - c), slice(k - c, k)
    params[:, locs] = (params[:, locs] + 1) / 2
    params[:, scales] = params[:, scales].clamp_min(-7.0) - math.log(2)
    expected = plain(params.flatten(1)).log_prob(x)
    assert torch.allclose(centred(out).log_prob(x), expected, atol=1e-5)
    # every level still has its mass: they sum to one for each value
    one_value = torch.arange(256).float()[:, None].expand(256, 12) / 255
    masses = centred(out[:1].expand(256, -1)).base_dist.log_prob(one_value).exp().sum(0)
    assert torch.allclose(masses, torch.ones(12), atol=1e-4)


def test_the_default_is_on_for_the_vae_with_256_levels_and_off_elsewhere():
    assert ModelConfig(likelihood="logistic256").centred is True
    assert ModelConfig(likelihood="logistic-mixture").centred is True
    assert ModelConfig(likelihood="bernoulli").centred is False
    assert ModelConfig(likelihood="logistic256", model="hvae").centred is False
    assert ModelConfig(likelihood="bernoulli", centred=True).centred is True
    with pytest.raises(ValueError, match="--model hvae builds its own networks.*leave out"):
        ModelConfig(likelihood="logistic256", model="hvae", centred=True)


def test_runs_saved_before_the_option_read_zero_one_as_they_did():
    saved = {"likelihood": "logistic256", "net": "conv", "image_shape": (3, 8, 8), "x_dim": 192}
    assert from_dict(ModelConfig, saved).centred is False
    assert from_dict(ModelConfig, {**saved, "centred": True}).centred is True


def test_centred_encoders_read_two_x_minus_one_with_the_same_parameters():
    torch.manual_seed(0)
    x = torch.rand(3, 192)
    conv, conv_c = ConvEncoder((3, 8, 8), 4), ConvEncoder((3, 8, 8), 4, centred=True)
    conv_c.load_state_dict(conv.state_dict())  # the same parameter names
    assert torch.allclose(conv_c(x), conv(2 * x - 1), atol=1e-6)
    mlp = MLP(192, (8,), 4)
    mlp_c = MLP(192, (8,), 4, centred=True)
    mlp_c.load_state_dict(mlp.state_dict())
    assert torch.allclose(mlp_c(x), mlp(2 * x - 1), atol=1e-6)
    for net in ("mlp", "conv"):
        config = ModelConfig(
            likelihood="logistic256", net=net, hidden=(8,), image_shape=(3, 8, 8), x_dim=192
        )
        _, guide = kinds.build(config)
        assert guide.encoder.centred, net


def test_centring_keeps_likelihoods_without_the_option_as_they_are():
    lik = kinds.kind_of("vae").likelihood(ModelConfig(likelihood="bernoulli", centred=True))
    assert isinstance(lik, likelihoods.Bernoulli)


def test_the_logistic_mean_is_the_same_summed_in_groups_of_edges(monkeypatch):
    loc, log_scale = torch.randn(7, 50), torch.randn(7, 50) - 2
    edges = (torch.arange(1, 256) - 0.5) / 255
    cdf = torch.sigmoid((edges - loc[..., None]) * torch.exp(-log_scale)[..., None])
    expected = (1 - cdf).sum(-1) / 255  # all 255 edges at once
    whole = likelihoods.DiscretizedLogisticDistribution(loc, log_scale).mean
    assert torch.equal(whole, expected)
    monkeypatch.setattr(likelihoods, "MEAN_ELEMENTS", 1000)  # 2 edges per group
    grouped = likelihoods.DiscretizedLogisticDistribution(loc, log_scale).mean
    assert torch.allclose(grouped, expected, atol=1e-6)
