"""The disentanglement metrics on representations whose answer is known: the true factors
score near the top, a random map near chance, and permuting code dimensions changes nothing."""

from __future__ import annotations

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
