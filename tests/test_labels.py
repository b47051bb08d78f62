"""Label-aware models: the conditional VAE, the semi-supervised M2 and its baseline classifier;
label data (one-hot, balanced subsets, semi-supervised batches)."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceEnum_ELBO
from pyro.optim import Adam

from pyro_vae import data, evaluate, predictive
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.guides import ConditionalNormalGuide, M2Guide
from pyro_vae.models import Classifier, CVAEModel, M2Model, NoLatents
from pyro_vae.runtime import module_local_params
from pyro_vae.train import Trainer
from tests.conftest import REPO

K, X_DIM, Z_DIM = 10, 784, 4


def labels_and_images(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % K
    return torch.bernoulli(torch.full((n, X_DIM), 0.3)), data.one_hot(y, K)


def m2_pair(aux_weight: float = 46.0) -> tuple[M2Model, M2Guide]:
    guide = M2Guide(X_DIM, Z_DIM, K, (32,))
    model = M2Model(X_DIM, Z_DIM, K, (32,), classifier=guide.classifier, aux_weight=aux_weight)
    return model, guide


# --- data --------------------------------------------------------------------------------


def test_one_hot_and_its_errors():
    assert data.one_hot(torch.tensor([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="lie in 0..2"):
        data.one_hot(torch.tensor([3]), 3)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        data.one_hot(torch.tensor([0.5]), 3)


def test_balanced_subset_is_balanced_and_seeded():
    labels = torch.arange(1000) % K
    a = data.balanced_subset(labels, 100, seed=0)
    assert len(a) == 100 and len(a.unique()) == 100
    assert torch.bincount(labels[a], minlength=K).tolist() == [10] * K
    assert torch.equal(a, data.balanced_subset(labels, 100, seed=0))
    assert not torch.equal(a, data.balanced_subset(labels, 100, seed=1))
    with pytest.raises(ValueError, match="multiple of 10"):
        data.balanced_subset(labels, 105, seed=0)


@pytest.mark.parametrize("repeats", [1, 3])
def test_semi_supervised_batches_visit_each_datum_as_scheduled(repeats):
    x = torch.arange(1000.0)[:, None]
    y = data.one_hot(torch.arange(1000) % K, K)
    source = data.SemiSupervised(x[:30], y[:30], x[30:], repeats=repeats)
    out = list(data.batches(source, 16))
    assert len(out) == data.num_batches(source, 16) == repeats * 2 + math.ceil(970 / 16)
    labelled = [b for b in out if len(b) == 2]
    unlabelled = [b for b in out if len(b) == 1]
    assert sorted(torch.cat([b[0] for b in unlabelled]).squeeze(1).tolist()) == list(
        range(30, 1000)
    )
    seen = torch.cat([b[0] for b in labelled]).squeeze(1)
    assert torch.bincount(seen.long(), minlength=30).tolist() == [repeats] * 30
    for xb, yb in labelled:  # rows stay paired with their labels
        assert torch.equal(yb.argmax(1), xb.squeeze(1).long() % K)
    # spread through the epoch, not bunched at one end
    positions = [i for i, b in enumerate(out) if len(b) == 2]
    assert positions[0] < len(out) / 2 < positions[-1]
    assert data.num_data(source) == repeats * 30 + 970


def test_tuple_batches_keep_rows_together_and_binarize_the_first():
    x = torch.full((50, 3), 0.5)
    y = data.one_hot(torch.arange(50) % K, K)
    for xb, yb in data.batches((x, y), 8, dynamic=True):
        assert set(xb.unique().tolist()) <= {0.0, 1.0}
        assert yb.shape == (len(xb), K) and torch.equal(yb.sum(1), torch.ones(len(xb)))


# --- models and guides ---------------------------------------------------------------------


def test_cvae_works_with_svi_and_predictive():
    x, y = labels_and_images()
    model, guide = CVAEModel(X_DIM, Z_DIM, K, (32,)), ConditionalNormalGuide(X_DIM, Z_DIM, K, (32,))
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x, y) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    draws = Predictive(model, num_samples=3, return_sites=["x"])(y=y[:5])
    assert draws["x"].shape == (3, 5, X_DIM)
    grid = predictive.class_conditional(model, K, 2)
    assert grid["mean"].shape == (2 * K, X_DIM) and torch.equal(
        grid["y"][::2].argmax(1), torch.arange(K)
    )
    assert predictive.style_transfer(model, guide, x[:3], y[:3]).shape == (3, K, X_DIM)


def test_conditional_models_refuse_bad_labels():
    x, y = labels_and_images(8)
    model = CVAEModel(X_DIM, Z_DIM, K, (32,))
    with pytest.raises(ValueError, match="needs labels"):
        model(x)
    with pytest.raises(ValueError, match=r"one-hot of shape \(batch, 10\)"):
        model(x, y[:, :5])
    with pytest.raises(ValueError, match="x has 8 rows but y has 4"):
        model(x, y[:4])
    with pytest.raises(ValueError, match="one-hot rows"):
        model(x, 0.5 * y)
    with pytest.raises(ValueError, match="guide"):
        M2Model(X_DIM, Z_DIM, K, (32,), classifier=None, aux_weight=1.0)


def test_m2_enumerated_elbo_is_the_sum_over_classes():
    """TraceEnum_ELBO's loss on unlabelled x equals
    -sum_y q(y|x) [ELBO(x, y) + log p(y) - log q(y|x)], each labelled ELBO by Monte Carlo."""
    torch.manual_seed(0)
    model, guide = m2_pair(aux_weight=0.0)
    x = torch.bernoulli(torch.full((1, X_DIM), 0.3))
    n = 4000
    enum = TraceEnum_ELBO(max_plate_nesting=1, num_particles=n, vectorize_particles=True)
    enumerated = enum.loss(model, guide, x)
    q_y = guide.classify(x)[0]
    per_class = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)
    explicit = 0.0
    for c in range(K):
        y = data.one_hot(torch.tensor([c]), K)
        # -ELBO(x, y) with y observed in the model: includes -log p(y)
        explicit += q_y[c].item() * (per_class.loss(model, guide, x, y) + math.log(q_y[c].item()))
    assert enumerated == pytest.approx(explicit, abs=0.5)


def test_m2_auxiliary_term_is_the_scaled_classifier_log_likelihood():
    x, y = labels_and_images(16)
    model, guide = m2_pair(aux_weight=7.0)
    plain = M2Model(X_DIM, Z_DIM, K, (32,), classifier=guide.classifier, aux_weight=0.0)
    plain.load_state_dict(model.state_dict())
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    with module_local_params(model, plain, guide):
        pyro.set_rng_seed(1)
        with_aux = elbo.loss(model, guide, x, y)
        pyro.set_rng_seed(1)
        without = elbo.loss(plain, guide, x, y)
    log_q = torch.distributions.OneHotCategorical(logits=guide.classifier(x)).log_prob(y).sum()
    assert with_aux - without == pytest.approx(-7.0 * log_q.item(), rel=1e-4)
    trace = poutine.trace(model).get_trace(x, y)
    assert trace.nodes["y_aux"]["scale"] == 7.0
    assert "y_aux" not in poutine.trace(model).get_trace(x).nodes  # unlabelled: no aux term


def test_m2_guide_enumerates_y_in_parallel():
    model, guide = m2_pair()
    x, _ = labels_and_images(8)
    trace = poutine.trace(guide).get_trace(x)
    assert trace.nodes["y"]["infer"]["enumerate"] == "parallel"
    with module_local_params(model, guide):
        loss = TraceEnum_ELBO(max_plate_nesting=1)(model, guide)(x)
    loss.backward()
    assert guide.classifier[0].weight.grad.abs().sum() > 0  # the ELBO trains q(y|x)


def test_estimators_accept_label_tuples():
    x, y = labels_and_images(16)
    model, guide = CVAEModel(X_DIM, Z_DIM, K, (32,)), ConditionalNormalGuide(X_DIM, Z_DIM, K, (32,))
    terms = evaluate.elbo_terms(model, guide, (x, y))
    assert terms["elbo"] == pytest.approx(terms["reconstruction"] - terms["kl"])
    ll = evaluate.log_likelihood(model, guide, (x, y), 50)
    assert ll.shape == (16,) and (ll >= terms["elbo"] - 50).all()
    m2, g2 = m2_pair()
    assert math.isfinite(evaluate.elbo(m2, g2, x))  # y sampled from q(y|x)
    assert evaluate.log_likelihood(m2, g2, x, 20).shape == (16,)


# --- runs ------------------------------------------------------------------------------------


@pytest.fixture
def label_config(tiny_mnist_dir) -> TrainConfig:
    return TrainConfig(
        dataset="mnist",
        data_dir=str(tiny_mnist_dir),
        train_size=2000,
        test_size=200,
        epochs=3,
        batch_size=100,
        lr=3e-3,
        ll_samples=20,
    )


def test_m2_run_learns_to_classify_and_restores(label_config, tmp_path):
    """The made-up digits' label is a bar's height: 50 labels suffice for a high accuracy."""
    cfg = ModelConfig(model="m2", z_dim=4, hidden=(64,), activation="softplus")
    tc = TrainConfig(
        **{**label_config.__dict__, "elbo": "enum", "labels": 50, "labelled_repeats": 5}
    )
    run, result = runs.train(cfg, tc, tmp_path / "m2", progress=False)
    assert result["accuracy"] > 0.8
    assert [r["test_accuracy"] for r in run.trainer.history][-1] == pytest.approx(
        result["accuracy"]
    )
    assert {"prior_samples.png", "style_transfer.png", "reconstructions.png"} <= {
        p.name for p in (tmp_path / "m2").iterdir()
    }
    header = (tmp_path / "m2" / "metrics.csv").read_text().splitlines()[0]
    assert "test_accuracy" in header
    train = run.train_data
    assert len(train.labelled_x) == 50 and len(train.unlabelled_x) == 1950
    restored = runs.load(tmp_path / "m2" / "checkpoint.pt", device="cpu")
    acc = evaluate.accuracy(restored.guide, restored.data.test, restored.data.test_labels)
    assert acc == pytest.approx(result["accuracy"])


def test_cvae_run_reports_log_likelihood_given_y(label_config, tmp_path, capsys):
    cfg = ModelConfig(model="cvae", z_dim=4, hidden=(64,))
    run, result = runs.train(cfg, label_config, tmp_path / "cvae", progress=False)
    assert result["log_likelihood"] >= result["elbo"] - 1.0
    assert "log p(x | y)" in capsys.readouterr().err
    assert isinstance(run.test_data, tuple) and run.test_data[1].shape == (200, 10)


@pytest.mark.parametrize(
    "changes, train_changes, message",
    [
        ({"model": "m2"}, {}, "--model m2 needs --labels N"),
        ({"model": "cvae", "guide": "iaf"}, {}, "unknown guide of the label-aware models .iaf."),
        ({"model": "m2", "prior": "vampprior"}, {"labels": 50}, "vampprior"),
        ({"model": "m2"}, {"labels": 55}, "multiple of 10"),
    ],
)
def test_label_models_refuse_bad_settings(label_config, tmp_path, changes, train_changes, message):
    tc = TrainConfig(**{**label_config.__dict__, **train_changes})
    with pytest.raises(ValueError, match=message):
        runs.build(ModelConfig(z_dim=4, hidden=(16,), **changes), tc)


def test_label_models_need_labelled_data(label_config):
    ds = data.load("mnist", label_config.data_dir)
    unlabelled = data.Dataset("made-up", ds.train[:100], ds.test[:10], (28, 28), "test")
    with pytest.raises(ValueError, match="needs labelled data"):
        runs.build(ModelConfig(model="cvae", z_dim=4, hidden=(16,)), label_config, unlabelled)


def test_supervised_only_classifier_trains_through_the_trainer(label_config):
    ds = data.load("mnist", label_config.data_dir).subset(500, 200)
    x, y = torch.bernoulli(data.as_input(ds.train)), data.one_hot(ds.train_labels, K)
    model = Classifier(X_DIM, K, (32,))
    trainer = Trainer(model, NoLatents(), label_config, torch.device("cpu"))
    history = trainer.fit(
        (x, y), 5, test=(torch.bernoulli(data.as_input(ds.test)), data.one_hot(ds.test_labels, K))
    )
    # no latents: the ELBO is the labels' log-likelihood, a negative cross-entropy
    assert history[-1]["test_kl"] == 0.0 and history[-1]["test_elbo"] > history[0]["test_elbo"]
    assert evaluate.accuracy(model, ds.test, ds.test_labels) > 0.8


def test_label_agreement_tells_whether_the_decoder_uses_y():
    from experiments.semi_supervised import label_agreement

    model, guide = m2_pair()
    run = SimpleNamespace(model=model, guide=guide, model_config=SimpleNamespace(num_classes=K))
    z_part, y_part = model.decoder.inputs
    with torch.no_grad():
        z_part.weight.zero_()  # the decoder reads the label only: one image per class
        y_part.weight.mul_(10)
        images = model.decode(torch.zeros(K, Z_DIM), torch.eye(K)).mean
    optimizer = torch.optim.Adam(guide.classifier.parameters(), lr=1e-2)
    for _ in range(200):  # q(y|x) learns to read those ten images
        loss = torch.nn.functional.cross_entropy(guide.classifier(images), torch.arange(K))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert label_agreement(run, draws=20) == 1.0
    with torch.no_grad():
        y_part.weight.zero_()  # now it ignores y: every draw is the same image, one class
    assert label_agreement(run, draws=20) == pytest.approx(1 / K)


def test_readme_m2_example_runs():
    text = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if "M2Guide" in b]
    scope: dict = {}
    exec(block, scope)
    assert scope["guide"].classify(scope["x"]).shape == (8, 10)


def test_cli_evaluates_and_samples_label_models(label_config, tmp_path, capsys):
    from pyro_vae import cli

    cfg = ModelConfig(model="cvae", z_dim=4, hidden=(32,))
    runs.train(cfg, replace(label_config, epochs=1), tmp_path / "cvae", progress=False)
    ckpt = str(tmp_path / "cvae" / "checkpoint.pt")
    assert cli.main(["evaluate", ckpt, "--samples", "5", "--test-size", "20"]) == 0
    assert "log p(x | y)" in capsys.readouterr().out
    assert cli.main(["sample", ckpt, "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
