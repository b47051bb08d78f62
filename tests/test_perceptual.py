"""The perceptual likelihood (DFC-VAE): features of a frozen network, its options, and a run
whose feature network is trained on the data, saved with the model and never trained by SVI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from pyro_vae import api, cli
from pyro_vae.config import ModelConfig
from pyro_vae.likelihoods.perceptual import LOG_2PI, Perceptual, PerceptualOptions
from pyro_vae.quality import features

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "16", "--ll-samples", "4", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache" / "images"))


def test_log_prob_is_a_gaussian_on_the_features_and_largest_at_the_data():
    lik = Perceptual((1, 8, 8), "auto", (1, 2))
    x = torch.rand(4, 64).clamp(0.05, 0.95)
    exact = lik(torch.logit(x))  # decodes to x itself
    dims = sum(t[0].numel() for t in lik.layers(x))
    assert torch.allclose(exact.log_prob(x), torch.full((4,), -0.5 * dims * LOG_2PI), atol=1e-3)
    noisy = lik(torch.logit(x) + torch.randn(4, 64))
    assert bool((noisy.log_prob(x) < exact.log_prob(x)).all())
    seen, made = lik.layers(x), lik.layers(noisy.mean)
    by_hand = -0.5 * sum(((a - b).flatten(1) ** 2).sum(1) for a, b in zip(seen, made, strict=True))
    assert torch.allclose(noisy.log_prob(x), by_hand - 0.5 * dims * LOG_2PI, rtol=1e-5)
    # particles (K, batch) broadcast against the data, as IWAE and log-weights need
    assert lik(torch.randn(3, 4, 64)).log_prob(x).shape == (3, 4)
    assert noisy.sample().shape == (4, 64) and not lik.normalised


def test_gradients_reach_the_decoder_output_but_never_the_feature_network():
    lik = Perceptual((1, 8, 8))
    out = torch.randn(2, 64, requires_grad=True)
    lik(out).log_prob(torch.rand(2, 64)).sum().backward()
    assert out.grad is not None and bool(out.grad.abs().sum() > 0)
    assert all(p.grad is None and not p.requires_grad for p in lik.net.parameters())
    lik.train()
    assert not lik.net.training  # frozen, whatever mode the model is in


def test_a_torchscript_feature_network_and_bad_options(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    lik = Perceptual((1, 8, 8), str(path))
    assert [t.shape for t in lik.layers(torch.rand(2, 1, 8, 8))] == [(2, 3, 6, 6)]
    with pytest.raises(ValueError, match="not a TorchScript file"):
        Perceptual((1, 8, 8), str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="cannot import feature network"):
        Perceptual((1, 8, 8), "no_such_module:net")
    with pytest.raises(ValueError, match="flat rows"):
        Perceptual(None)
    with pytest.raises(ValueError, match="1 convolution levels.*choose levels from 1 to 2"):
        Perceptual((1, 8, 8), "auto", (3,))
    for levels, match in (((), "one or more"), ((0,), ">= 1"), ((1, 1), "not repeat")):
        with pytest.raises(ValueError, match=match):
            PerceptualOptions(perceptual_levels=levels).validate()
    with pytest.raises(ValueError, match="perceptual_levels must not repeat"):
        ModelConfig(likelihood="perceptual", perceptual_levels=(2, 2))


def write_folder(root, n: int = 60, size: int = 8):
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        label = i % 2
        img = torch.randint(0, 60, (size, size), generator=gen, dtype=torch.uint8)
        img[label * 4 : label * 4 + 4, :4] = 250
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.numpy()).save(root / f"c{label}" / f"{i}.png")
    return root


def test_a_run_trains_the_feature_network_on_its_data_and_saves_it(tmp_path, capsys):
    images = write_folder(tmp_path / "imgs")
    run = tmp_path / "run"
    argv = ["train", "--dataset", f"folder:{images}", "--likelihood", "perceptual", *TINY]
    assert cli.main([*argv, "--net", "conv", "--epochs", "2", "--out", str(run)]) == 0
    out = "".join(capsys.readouterr())
    assert "perceptual likelihood: feature network of imgs (classes" in out
    assert "pseudo-ELBO" in out and "no log p(x): a pseudo-likelihood" in out
    result = json.loads((run / "evaluation.json").read_text())
    assert "log_likelihood" not in result and result["elbo_kind"] == "pseudo-ELBO"
    loaded = api.load(run / "checkpoint.pt")
    cached, _, _ = features.trained(loaded.data)  # the network in the cache, not trained again
    lik = loaded.model.likelihood
    for name, value in cached.state_dict().items():
        if not name.startswith("head."):  # SVI left it as is
            assert torch.equal(lik.net.state_dict()[name], value), name
