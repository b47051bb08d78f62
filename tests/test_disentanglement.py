"""The disentanglement metrics on representations whose answer is known: the true factors
score near the top, a random map near chance, and permuting code dimensions changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae import disentanglement as dis
from pyro_vae import dsprites

SIZES = dsprites.SIZES


def true_factors(rows: torch.Tensor) -> torch.Tensor:
    return dsprites.factor_values(rows)


def random_map(rows: torch.Tensor) -> torch.Tensor:
    # codes that ignore the factors: one fixed random draw per distinct row
    g = torch.Generator().manual_seed(int(dsprites.image_index(rows[:1]).item()) + len(rows))
    return torch.randn(len(rows), 5, generator=g, dtype=torch.float64)


def entangled(rows: torch.Tensor) -> torch.Tensor:
    v = dsprites.factor_values(rows)
    mix = torch.tensor(
        [[1.0, 1, 0, 0, 0], [1, -1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, -1]],
        dtype=torch.float64,
    )
    return (v - v.mean(0)) / v.std(0) @ mix.T


def permuted(represent):
    perm = torch.tensor([3, 0, 4, 1, 2])
    return lambda rows: represent(rows)[:, perm]


def test_mutual_information_and_entropy_of_known_cases():
    a = torch.arange(1000) % 4
    assert dis.entropy(a) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert dis.mutual_information(a, a) == pytest.approx(dis.entropy(a))
    b = (torch.arange(1000) // 4) % 5  # independent of a over the sample
    assert dis.mutual_information(a, b) == pytest.approx(0.0, abs=1e-3)
    assert dis.discretize(torch.linspace(0, 1, 40)[:, None], 20).unique().numel() == 20


def test_mig():
    top = dis.mig_score(true_factors, SIZES, n=5000)
    assert top["mig"] > 0.8  # binning 40 orientations into 20 bins keeps log 20 / log 40
    assert dis.mig_score(random_map, SIZES, n=5000)["mig"] < 0.05
    assert dis.mig_score(permuted(true_factors), SIZES, n=5000)["mig"] == top["mig"]
    assert dis.mig_score(entangled, SIZES, n=5000)["mig"] < top["mig"] - 0.3


@pytest.mark.parametrize("metric", [dis.beta_vae_score, dis.factor_vae_score])
def test_classifier_metrics(metric):
    kw = {"train_votes": 300, "eval_votes": 200, "batch": 32}
    top = metric(true_factors, SIZES, **kw)
    assert top["eval_accuracy"] > 0.95
    chance = metric(random_map, SIZES, **kw)["eval_accuracy"]
    assert chance < 0.45  # five factors: chance is 0.2
    again = metric(permuted(true_factors), SIZES, **kw)["eval_accuracy"]
    assert again == pytest.approx(top["eval_accuracy"], abs=0.02)


def sharp_posterior(represent, scale=0.02):
    """q(z|x) centred on ``represent``'s standardized codes, narrow beside the factor spacing."""

    def posterior(rows):
        loc = represent(rows)
        loc = (loc - loc.mean(0)) / loc.std(0)
        return loc, torch.full_like(loc, scale)

    return posterior


def wide_random(rows):
    loc = random_map(rows)
    return loc, torch.ones_like(loc)


def test_mixture_entropies_of_known_mixtures():
    g = torch.Generator().manual_seed(0)
    # one component: the Normal's entropy 1/2 log(2 pi e sigma^2)
    loc, scale = torch.zeros(400, 1, dtype=torch.float64), torch.full((400, 1), 0.5)
    z = loc + scale * torch.randn(400, 1, generator=g, dtype=torch.float64)
    exact = 0.5 * math.log(2 * math.pi * math.e * 0.25)
    assert dis.mixture_entropies(z, loc, scale.double()).item() == pytest.approx(exact, abs=0.1)
    # four far-apart components in equal shares: log 4 more
    loc4 = (torch.arange(400) % 4).double()[:, None] * 100
    z4 = loc4 + scale * torch.randn(400, 1, generator=g, dtype=torch.float64)
    got = dis.mixture_entropies(z4, loc4, scale.double()).item()
    assert got == pytest.approx(exact + math.log(4), abs=0.1)


def test_mig_sampled_as_chen_et_al():
    # Chen et al.'s dSprites score: the mean over the factors asked for (shape left out)
    top = dis.mig_sampled(sharp_posterior(true_factors), SIZES, n=2000, factors=(1, 2, 3, 4))
    assert top["mig"] == pytest.approx(sum(top["per_factor"][1:]) / 4)
    # each code carries its factor's log |v_k| nats and little of the others
    assert min(top["per_factor"]) > 0.85
    for k, size in enumerate(SIZES):
        info = torch.tensor(top["mutual_information"][k])
        assert info.max().item() == pytest.approx(math.log(size), rel=0.1)
    assert dis.mig_sampled(wide_random, SIZES, n=2000)["mig"] < 0.05
    again = dis.mig_sampled(sharp_posterior(permuted(true_factors)), SIZES, n=2000)
    assert again["per_factor"] == pytest.approx(top["per_factor"], abs=0.03)
    mixed = dis.mig_sampled(sharp_posterior(entangled), SIZES, n=2000)
    assert mixed["mig"] < sum(top["per_factor"]) / 5 - 0.5


def test_posterior_of_a_normal_guide_and_refusal_of_others():
    from pyro_vae import guides, latent

    x = torch.rand(7, 784)
    guide = guides.NormalGuide(784, 3, (16,))
    loc, scale = latent.posterior(guide, x, batch_size=3)
    assert loc.shape == scale.shape == (7, 3) and (scale > 0).all()
    assert torch.allclose(loc, latent.encode(guide, x))  # the Normal guide's point is its mean
    with pytest.raises(ValueError, match="mean-field Normal"):
        latent.posterior(guides.IAFGuide(784, 3, (16,), flows=1, context_dim=4), x)
