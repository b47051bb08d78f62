"""Every compatible prior x likelihood x guide x objective trains: finite loss that decreases.

Incompatible combinations must fail at construction with a clear error instead.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae.config import GUIDES, ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.priors import PRIORS
from pyro_vae.train import Trainer

OBJECTIVES = {
    "trace": {},
    "meanfield": {"elbo": "meanfield"},
    "iwae3": {"elbo": "iwae", "num_particles": 3},
    "beta4-warmup": {"beta": 4.0, "warmup_epochs": 2},
    "miwae2x2": {"elbo": "miwae", "num_particles": 2, "iw_estimates": 2},
    "ciwae2": {"elbo": "ciwae", "num_particles": 2},
    "piwae2x2": {"elbo": "piwae", "num_particles": 2, "iw_estimates": 2},
    "wae-mmd": {"elbo": "wae-mmd"},
    "info-mmd": {"elbo": "info-mmd"},
    "swae": {"elbo": "swae", "swd_weight": 1.0},  # on 64 rows of 10: λ = 10 swamps the rest
    "dip-i": {"elbo": "dip-i"},
    "dip-ii": {"elbo": "dip-ii"},
    "factorvae": {"elbo": "factorvae", "critic_hidden": (8,)},
    "aae": {"elbo": "aae", "critic_hidden": (8,)},
    "hvae-hmc": {"elbo": "hvae-hmc", "hmc_steps": 2},
}
# objectives with a test file of their own: here once per prior and guide, and with a real-valued
# likelihood (the others at their defaults)
OBJECTIVE_OWN_FILE = {
    "miwae2x2": "tests/test_bounds.py",
    "ciwae2": "tests/test_bounds.py",
    "piwae2x2": "tests/test_bounds.py",
    "wae-mmd": "tests/test_divergences.py",
    "info-mmd": "tests/test_divergences.py",
    "swae": "tests/test_divergences.py",
    "dip-i": "tests/test_divergences.py",
    "dip-ii": "tests/test_divergences.py",
    "factorvae": "tests/test_critics.py",
    "aae": "tests/test_critics.py",
    "hvae-hmc": "tests/test_hamiltonian.py",
}
DEFAULTS = ("standard-normal", "bernoulli", "normal")
INCOMPATIBLE = {
    # (prior, guide, objective) patterns: None matches anything
    ("vampprior", "delta", None): "use --guide normal or fullcov",
    ("vampprior", "iaf", None): "use --guide normal or fullcov",
    # the model kind refuses an improper prior with a density-bearing guide as it builds the
    # pair, before the trainer looks at the objective
    ("flat", "normal", None): "the flat prior is improper",
    ("flat", "fullcov", None): "the flat prior is improper",
    ("flat", "iaf", None): "the flat prior is improper",
    ("vampprior", None, "piwae2x2"): "needs a prior that does not read the guide",
    ("flat", "delta", "wae-mmd"): "the flat prior is improper",
    ("flat", "delta", "info-mmd"): "the flat prior is improper",
    (None, "iaf", "meanfield"): "needs a mean-field guide",
    ("vampprior", "flow", None): "use --guide normal or fullcov",
    ("flat", "flow", None): "the flat prior is improper",
    (None, "flow", "meanfield"): "needs a mean-field guide",
    ("flat", "delta", "swae"): "the flat prior is improper",
    ("flat", "delta", "aae"): "the flat prior is improper",
    # DIP-VAE regularises the covariance of the guide's Normal means
    (None, "delta", "dip-i"): "use --guide normal",
    (None, "delta", "dip-ii"): "use --guide normal",
    (None, "fullcov", "dip-i"): "use --guide normal",
    (None, "fullcov", "dip-ii"): "use --guide normal",
    (None, "iaf", "dip-i"): "use --guide normal",
    (None, "iaf", "dip-ii"): "use --guide normal",
}


def incompatible(prior: str, guide: str, objective: str) -> str | None:
    # one on the sphere, the other in R^d: refused as the pair is built
    if (prior == "spherical") != (guide == "spherical"):
        return "put z on the unit sphere"
    for (p, g, o), message in INCOMPATIBLE.items():
        if p in (None, prior) and g in (None, guide) and o in (None, objective):
            return message
    return None


# 0/1 data lie in every likelihood's support (binary, [0, 1], 8-bit levels, reals)
DATA = torch.bernoulli(torch.rand(64, 1).expand(64, 10).contiguous())
# likelihoods that refuse flat rows such as DATA, and where they are tested on images
IMAGES_ONLY = {
    "msssim": "MS-SSIM compares images: tests/test_structural.py",
    "perceptual": "a feature network of images: tests/test_perceptual.py",
}
# likelihoods with a test file of their own: here only with the default objective, once per
# prior and once per guide (the whole product would add minutes of what they cannot change)
OWN_FILE = {"vaegan": "tests/test_vaegan.py", "logcosh": "tests/test_logcosh.py"}
# likelihoods whose features an adversary trains: their objective moves as the features do
ADVERSARIAL = {"vaegan"}
# objectives with a critic of the codes: the logged ELBO leaves out the critic's term, which
# the encoder trades it against
CRITICS = {"factorvae", "aae"}
# objectives with a statistic of the batch's codes against prior draws (MMD, SW²)
NOISY = {"wae-mmd", "info-mmd", "swae"}


# guides with a test file of their own: here with the default objective, once per prior and
# once per likelihood
GUIDE_OWN_FILE = {"flow": "tests/test_flow_guide.py", "spherical": "tests/test_spherical.py"}


def skipped(prior: str, likelihood: str, guide: str, objective: str) -> str | None:
    """Why a combination is not run here (None: it is)."""
    if likelihood in IMAGES_ONLY:
        return IMAGES_ONLY[likelihood]
    if objective in OBJECTIVE_OWN_FILE:
        changed = sum(a != b for a, b in zip((prior, likelihood, guide), DEFAULTS, strict=True))
        # they read log-weights or codes: a likelihood other than a real-valued one changes none
        if changed > 1 or likelihood not in ("bernoulli", "normal"):
            return f"{objective}: one piece changed at a time; {OBJECTIVE_OWN_FILE[objective]}"
    if guide in GUIDE_OWN_FILE and not (
        objective == "trace" and (prior == "standard-normal" or likelihood == "bernoulli")
    ):
        return f"{guide}: one case per prior and per likelihood; {GUIDE_OWN_FILE[guide]}"
    if likelihood in OWN_FILE and not (
        objective == "trace" and (prior == "standard-normal" or guide == "normal")
    ):
        return f"{likelihood}: one case per prior and per guide; {OWN_FILE[likelihood]}"
    return None


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("guide", sorted(GUIDES))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_combination(prior, likelihood, guide, objective):
    reason = skipped(prior, likelihood, guide, objective)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    config = ModelConfig(
        x_dim=10,
        z_dim=2,
        hidden=(8,),
        prior=prior,
        likelihood=likelihood,
        guide=guide,
        prior_components=3,
    )
    train = TrainConfig(batch_size=64, lr=1e-2, **OBJECTIVES[objective])
    message = incompatible(prior, guide, objective)
    if message is not None:
        with pytest.raises(ValueError, match=message):  # as it is built, or at its first step
            Trainer(*build(config), train, torch.device("cpu")).fit(DATA, 1, progress=False)
        return
    trainer = Trainer(*build(config), train, torch.device("cpu"))
    history = trainer.fit(DATA, 20, progress=False)
    objective_values = [r["train_elbo"] for r in history]
    assert all(math.isfinite(v) for v in objective_values)
    # the objective itself changes while β ramps up, or as an adversary trains its features;
    # and where the prior is made of the guide's posteriors (VampPrior), the distance of q(z) to
    # it moves with the guide: under the MMD and SW² objectives (one noisy step per epoch here)
    # the 20 steps' trend went either way from run to run
    moving = prior == "vampprior" and objective in NOISY
    changing = objective == "beta4-warmup" or likelihood in ADVERSARIAL or objective in CRITICS
    if not (changing or moving):
        assert sum(objective_values[-5:]) > sum(objective_values[:5])


@pytest.mark.parametrize("guide", sorted(GUIDES))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_the_fast_module_path_gives_the_same_loss_and_gradients(
    prior, likelihood, guide, monkeypatch
):
    """``FastPyroModule`` skips PyroModule's placeholder param messages in module-local mode:
    for the same draws, the loss and every gradient are those of the plain PyroModule path."""
    import pyro

    from pyro_vae.runtime import FastPyroModule, fast_modules, module_local_params

    reason = skipped(prior, likelihood, guide, "trace")
    if incompatible(prior, guide, "trace") or reason:
        pytest.skip(reason or "incompatible")
    torch.manual_seed(0)
    config = ModelConfig(
        x_dim=10, z_dim=2, hidden=(8,), prior=prior, likelihood=likelihood, guide=guide
    )
    model, guide_ = build(config)
    loss = pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True)(model, guide_)

    def loss_and_grads() -> tuple[float, list]:
        loss.zero_grad()
        pyro.set_rng_seed(1)
        with module_local_params(model, guide_), fast_modules():
            value = loss(DATA)
        value.backward()
        return value.item(), [p.grad.clone() for p in loss.parameters() if p.grad is not None]

    loss_and_grads()  # the first call also guesses max_plate_nesting, drawing more
    fast = loss_and_grads()
    monkeypatch.setattr(FastPyroModule, "__getattr__", pyro.nn.PyroModule.__getattr__)
    plain = loss_and_grads()
    assert fast[0] == plain[0]
    assert len(fast[1]) == len(plain[1]) > 0
    assert all(torch.equal(a, b) for a, b in zip(fast[1], plain[1], strict=True))
