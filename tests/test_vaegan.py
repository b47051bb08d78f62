"""VAE-GAN (Larsen et al. 2016): the feature likelihood, the adversary step beside the SVI step
(what each part trains, traced and eager alike), exact resume, its options, torchrun refusal."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from pyro_vae import checkpoint, cli, distributed
from pyro_vae.adversary import Adversary
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.likelihoods import LIKELIHOODS, check_support
from pyro_vae.likelihoods.adversarial import VAEGAN, FeatureLikelihoodDistribution
from pyro_vae.runtime import fast_modules, module_local_params
from pyro_vae.train import Trainer

from .test_takehome import one_line_error

CPU = torch.device("cpu")
SHAPE = (1, 16, 16)  # two discriminator levels: 8 x 8 x 32 and 4 x 4 x 64 features
TINY = ["--z-dim", "2", "--hidden", "16", "--batch-size", "16", "--ll-samples", "0"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))


def images(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Rows of 16 x 16 grey images in [0, 1]: a bright square at a random place."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=gen) * 0.2
    for i, (r, c) in enumerate(torch.randint(0, 10, (n, 2), generator=gen).tolist()):
        x[i, :, r : r + 6, c : c + 6] = 0.9
    return x.reshape(n, -1)


def vaegan_pair(**options) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    config = ModelConfig(
        likelihood="vaegan", net="conv", x_dim=256, image_shape=SHAPE, z_dim=2, hidden=(16,)
    )
    for name, value in options.items():
        setattr(config, name, value)
    return build(config)


def test_the_likelihood_is_a_gaussian_on_the_discriminators_features():
    torch.manual_seed(0)
    likelihood = VAEGAN(256, SHAPE)
    assert "vaegan" in LIKELIHOODS and VAEGAN.normalised is False
    assert likelihood.layer == 2 and isinstance(likelihood, Adversary)
    out = torch.randn(5, 256)
    d = likelihood(out)
    assert isinstance(d, FeatureLikelihoodDistribution)
    assert d.batch_shape == (5,) and d.event_shape == (256,)
    assert torch.equal(d.mean, torch.sigmoid(out)) and torch.equal(d.sample(), d.mean)
    x = images(5)
    features = 4 * 4 * 64
    best = -0.5 * features * math.log(2 * math.pi)  # the log-density at its mode
    assert d.log_prob(x).shape == (5,) and bool((d.log_prob(x) < best).all())
    assert torch.allclose(d.log_prob(d.mean), torch.full((5,), best))
    closer = likelihood(torch.logit(0.5 * x + 0.5 * d.mean))  # x̃ halfway to x
    assert bool((closer.log_prob(x) > d.log_prob(x)).all())
    expected = (
        -0.5
        * (likelihood.discriminator.features(x, 2) - likelihood.discriminator.features(d.mean, 2))
        .pow(2)
        .sum(-1)
        + best
    )
    assert torch.allclose(d.log_prob(x), expected)
    # particles (K, batch) broadcast against the data; the first layer has its own features
    assert d.expand((3, 5)).log_prob(x).shape == (3, 5)
    first = VAEGAN(256, SHAPE, vaegan_layer=1)(out)
    assert first.log_prob(first.mean)[0].item() == pytest.approx(-0.5 * 8 * 8 * 32 * 1.8378770)
    with pytest.raises(ValueError, match="outside the support of the VAEGAN likelihood.*1/255"):
        check_support(d, x * 255, likelihood)
    flat = VAEGAN(10)  # flat data: an MLP discriminator of two feature layers
    assert flat.layer == 2 and flat(torch.zeros(4, 10)).log_prob(torch.rand(4, 10)).shape == (4,)


@pytest.mark.parametrize("image_shape", [SHAPE, None])
def test_the_discriminators_features_are_normalised_per_datum(image_shape):
    """Its features cannot shrink (the feature likelihood keeps its weight against the KL) and a
    datum's features do not depend on the rest of its batch."""
    torch.manual_seed(0)
    disc = VAEGAN(256, image_shape).discriminator
    x = images(6)
    before = [disc.features(x, layer) for layer in (1, 2)]
    assert torch.allclose(disc.features(x[:1], 2), before[1][:1], atol=1e-5)
    assert torch.allclose(disc(x[:1]), disc(x)[:1], atol=1e-5)
    for feature in before:  # LeakyReLU of a unit-variance map: a mean square near 1/2 or more
        assert bool((feature.pow(2).mean(-1) > 0.3).all())
    with torch.no_grad():
        for p in disc.blocks[0][0].parameters():
            p.mul_(0.1)  # shrunk tenfold: the same features (up to the norm's eps)
    assert torch.allclose(disc.features(x, 1), before[0], rtol=0.05, atol=0.01)
    assert torch.allclose(disc.features(x, 2), before[1], rtol=0.05, atol=0.01)


def test_the_discriminator_is_trained_by_its_own_step_only():
    model, guide = vaegan_pair()
    disc = model.likelihood.discriminator
    trainer = Trainer(model, guide, TrainConfig(batch_size=16, step="eager"), CPU)
    svi = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    own = {id(p) for p in disc.parameters()}
    assert not svi & own and svi | own == {id(p) for p in trainer.loss.parameters()}
    assert [a for a in trainer.adversaries] == [model.likelihood]
    (adam,) = trainer.adversary_optimizers
    assert adam.param_groups[0]["lr"] == 3e-4 and adam.param_groups[0]["betas"] == (0.5, 0.999)
    before = [p.detach().clone() for p in disc.parameters()]
    decoder = [p.detach().clone() for p in model.decoder.parameters()]
    adam.step = lambda *a, **k: None  # the adversary step's update, switched off
    trainer.fit(images(), 1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))
    assert not all(
        torch.equal(a, b) for a, b in zip(decoder, model.decoder.parameters(), strict=True)
    )
    assert all(p.requires_grad for p in disc.parameters())  # gradients are off within a step only
    model, guide = vaegan_pair()
    disc = model.likelihood.discriminator
    Trainer(model, guide, TrainConfig(batch_size=16, step="eager"), CPU).fit(
        images(), 1, progress=False
    )
    assert not all(torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))


def test_the_gan_term_reaches_the_decoder_and_not_the_encoder_or_the_prior():
    model, guide = vaegan_pair(prior="normal")  # a prior with learned parameters
    x = images(8)
    with module_local_params(model, guide), fast_modules():
        loss = model.likelihood.generator_loss(model, guide, (x,))
        loss.backward()
    assert loss.item() > 0
    for name, module in (("encoder", guide), ("prior", model.prior)):
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is None for g in grads), name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    # the discriminator's loss reuses the generator term's images and trains D alone
    model.zero_grad(set_to_none=True)
    stored = model.likelihood._images
    assert stored is not None and all(not t.requires_grad for t in stored)
    with module_local_params(model, guide), fast_modules():
        model.likelihood.discriminator_loss(model, guide, (x,)).backward()
    assert model.likelihood._images is None
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.likelihood.discriminator.parameters())


def test_traced_and_eager_steps_train_the_same(capsys):
    weights, histories = {}, {}
    for step in ("traced", "eager"):
        model, guide = vaegan_pair()
        trainer = Trainer(model, guide, TrainConfig(batch_size=16, step=step), CPU)
        history = trainer.fit(images(48), 2, test=images(16, seed=1), progress=False)
        if step == "traced":  # the ELBO replayed from its graph, the adversary eager
            assert trainer.traced.disabled is None and trainer.traced.traces == 1
            assert trainer.traced.calls == 6
        else:
            assert trainer.traced is None
        histories[step] = [r[k] for r in history for k in ("train_elbo", "test_elbo")]
        weights[step] = [p.detach() for p in trainer.loss.parameters()]
    assert "eager step" not in capsys.readouterr().err
    assert histories["traced"] == pytest.approx(histories["eager"], rel=1e-5)
    for a, b in zip(weights["traced"], weights["eager"], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_cli_run_trains_writes_a_checkpoint_and_resumes_exactly(tmp_path, capsys):
    np.save(tmp_path / "x.npy", (images(40).reshape(40, *SHAPE) * 255).round().byte().numpy())
    spec = ["--dataset", f"array:{tmp_path / 'x.npy'}", "--likelihood", "vaegan", "--net", "conv"]
    argv = ["train", *spec, *TINY, "--vaegan-layer", "1", "--step", "eager", "--no-progress"]
    assert cli.main([*argv, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*argv, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main([*argv, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (checkpoint.load(tmp_path / r / "checkpoint.pt")["trainer"] for r in "ab")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 6
    assert len(a["adversaries"]) == 1 and a["adversaries"][0]["state"]

    def same(x, y) -> bool:
        if isinstance(x, torch.Tensor):
            return torch.equal(x, y)
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list | tuple):
            return len(x) == len(y) and all(same(i, j) for i, j in zip(x, y, strict=True))
        return x == y

    for key in ("modules", "optimizer", "adversaries", "rng"):
        assert same(a[key], b[key]), key
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a["history"]) == drop(b["history"])
    assert (tmp_path / "a" / "prior_samples.png").stat().st_size > 0
    err = capsys.readouterr().err  # a pseudo-likelihood's ELBO is called so, epoch by epoch
    assert "epoch 2/2: train pseudo-ELBO " in err and ", test pseudo-ELBO " in err


@pytest.mark.parametrize(
    "flag, value, match",
    [
        ("--vaegan-gamma", "0", "vaegan_gamma must be a finite number > 0"),
        ("--vaegan-gamma", "nan", "vaegan_gamma must be a finite number > 0"),
        ("--vaegan-lr", "-1e-3", r"vaegan_lr must lie in \(0, 1\]"),
        ("--vaegan-layer", "0", "vaegan_layer must be a whole number >= 1"),
        ("--vaegan-layer", "3", "vaegan_layer must be a whole number from 1 to 2"),
    ],
)
def test_each_option_is_refused_in_one_line(flag, value, match, tmp_path, capsys):
    np.save(tmp_path / "x.npy", (images(8).reshape(8, *SHAPE) * 255).round().byte().numpy())
    spec = ["--dataset", f"array:{tmp_path / 'x.npy'}", "--likelihood", "vaegan", "--net", "conv"]
    line = one_line_error(
        capsys, ["train", *spec, *TINY, f"{flag}={value}", "--out", str(tmp_path / "run")]
    )
    assert line.startswith("pyro-vae: error: ") and re.search(match, line)


def test_the_options_are_checked_where_they_are_defined():
    for bad, match in (
        ({"vaegan_gamma": -1.0}, "vaegan_gamma must be a finite number > 0"),
        ({"vaegan_lr": 2.0}, r"vaegan_lr must lie in \(0, 1\]"),
        ({"vaegan_layer": 1.5}, "vaegan_layer must be a whole number >= 1"),
        ({"vaegan_layer": 5, "image_shape": (1, 28, 28)}, "from 1 to 2"),
    ):
        with pytest.raises(ValueError, match=match) as e:
            ModelConfig(likelihood="vaegan", **bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="vaegan_layer must be a whole number from 1 to 2"):
        VAEGAN(10, vaegan_layer=3)  # flat data: known at construction


def test_torchrun_is_refused_in_one_line(monkeypatch):
    model, guide = vaegan_pair()
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=2))
    with pytest.raises(ValueError, match="train it in one process") as e:
        Trainer(model, guide, TrainConfig(), CPU)
    assert "\n" not in str(e.value) and "VAEGAN" in str(e.value)
