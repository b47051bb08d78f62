"""The traced training step (pyro_vae.traced) against Pyro's eager step: the same loss and
gradients on the same draws, for every prior x likelihood x guide x differentiable objective and
every model kind; one line and the eager step where a model cannot be traced."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from pyro_vae import run as runs
from pyro_vae.config import GUIDES, ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.objectives import ScaleLatents, make_elbo
from pyro_vae.priors import PRIORS
from pyro_vae.runtime import fast_modules, module_local_params
from pyro_vae.traced import THRASH_TRACES, TracedLoss, simplify
from pyro_vae.train import Trainer

from .test_combinations import DATA, incompatible, skipped
from .test_kinds import tiny_dataset

CPU = torch.device("cpu")
# guides whose draws the traced step cannot differentiate: it falls back, with a note
EAGER_GUIDES = {"spherical": "a Beta draw has no traced backward: tests/test_spherical.py"}
# differentiable objectives (iwae runs RenyiELBO.loss_and_grads: always eager)
OBJECTIVES = {
    "trace": ("trace", 1, 1.0),
    "meanfield": ("meanfield", 1, 1.0),
    "trace-k3": ("trace", 3, 1.0),
    "beta0.3": ("trace", 1, 0.3),
}


def _grads(loss: torch.nn.Module) -> list[torch.Tensor]:
    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in loss.parameters()
    ]


def _step(fn, loss: torch.nn.Module, x: torch.Tensor, seed: int, beta: float):
    loss.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with ScaleLatents(beta) if beta != 1.0 else _null():
        value = fn(x)
    value.backward()
    return value.detach(), _grads(loss), torch.get_rng_state()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("guide", sorted(GUIDES))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_the_traced_step_gives_pyros_loss_and_gradients(prior, likelihood, guide, objective):
    elbo_name, k, beta = OBJECTIVES[objective]
    reason = skipped(prior, likelihood, guide, objective)
    if guide in EAGER_GUIDES:
        pytest.skip(EAGER_GUIDES[guide])
    if incompatible(prior, guide, elbo_name) or reason:
        pytest.skip(reason or "incompatible")
    torch.manual_seed(0)
    config = ModelConfig(
        x_dim=10, z_dim=2, hidden=(8,), prior=prior, likelihood=likelihood, guide=guide
    )
    model, guide_ = build(config)
    loss = make_elbo(elbo_name, k)(model, guide_)
    notes: list[str] = []
    traced = TracedLoss(loss, report=notes.append)
    with module_local_params(model, guide_), fast_modules(), pyro.validation_enabled(False):
        loss(DATA)  # Pyro's first call guesses max_plate_nesting, drawing more
        for seed in (1, 2):  # the first call traces and checks; the second replays
            eager = _step(loss, loss, DATA, seed, beta)
            fast = _step(traced, loss, DATA, seed, beta)
            assert notes == [] and traced.disabled is None
            assert torch.allclose(fast[0], eager[0], rtol=1e-6, atol=1e-5)
            for a, b in zip(fast[1], eager[1], strict=True):  # float32, summed in another order
                assert (a - b).abs().max() <= 1e-5 * b.abs().max() + 1e-6
            assert torch.equal(fast[2], eager[2])  # the same draws, no more, no fewer
    assert len(traced.graphs) == 1 and traced.traces == 1


KINDS = {
    "vae": {},
    "vae-conv": {"net": "conv"},
    "cvae": {"model": "cvae"},
    "hvae-bottom-up": {"model": "hvae", "guide": "bottom-up", "z1_dim": 3, "top_hidden": (8,)},
    "hvae-ladder": {"model": "hvae", "guide": "ladder", "z1_dim": 3, "top_hidden": (8,)},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_trains_the_same_traced_and_eager(kind, tmp_path, capsys):
    histories, weights = {}, {}
    for step in ("traced", "eager"):
        run, _ = runs.train(
            ModelConfig(z_dim=2, hidden=(8,), **KINDS[kind]),
            TrainConfig(epochs=2, batch_size=48, ll_samples=0, warmup_epochs=1, step=step),
            tmp_path / step,
            dataset=tiny_dataset(),
            progress=False,
        )
        histories[step] = [row["train_elbo"] for row in run.trainer.history]
        weights[step] = [p.detach().clone() for p in run.trainer.loss.parameters()]
    assert "eager step" not in capsys.readouterr().err
    assert histories["traced"] == pytest.approx(histories["eager"], rel=1e-5)
    for a, b in zip(weights["traced"], weights["eager"], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("elbo", ["trace", "enum"])
def test_m2_traces_its_labelled_and_unlabelled_steps(elbo, tmp_path, capsys):
    histories = {}
    for step in ("traced", "eager"):
        run, _ = runs.train(
            ModelConfig(model="m2", z_dim=2, hidden=(8,)),
            TrainConfig(epochs=2, batch_size=48, ll_samples=0, labels=30, elbo=elbo, step=step),
            tmp_path / step,
            dataset=tiny_dataset(),
            progress=False,
        )
        histories[step] = [row["train_elbo"] for row in run.trainer.history]
        if step == "traced" and elbo == "trace":
            assert run.trainer.traced is not None and run.trainer.traced.graphs
    notes = [line for line in capsys.readouterr().err.splitlines() if "eager step" in line]
    if elbo == "enum":
        # Pyro's enumeration asks whether every class probability is > 0 (a branch on values)
        assert len(notes) == 1 and "pyro/infer/util.py" in notes[0], notes
    else:
        assert notes == []
    assert histories["traced"] == pytest.approx(histories["eager"], rel=1e-5)


def test_trainer_traces_once_per_shape_and_beta():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    config = TrainConfig(batch_size=48, warmup_epochs=3)
    trainer = Trainer(model, guide, config, CPU)
    trainer.fit(DATA.repeat(2, 1), 3, progress=False)  # 128 data: batches of 48, 48, 32
    assert trainer.traced is not None and trainer.traced.disabled is None
    assert trainer.traced.traces == 3 * 2  # three values of β, two batch shapes
    assert trainer.traced.calls == 3 * 3


def test_iwae_and_the_jit_elbos_keep_their_own_step():
    for elbo in ("iwae", "jit-trace"):
        model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
        assert Trainer(model, guide, TrainConfig(elbo=elbo), CPU).traced is None
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    assert Trainer(model, guide, TrainConfig(step="eager"), CPU).traced is None


def test_a_model_that_reads_tensor_values_falls_back_with_one_line():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    forward = model.forward

    def reads_values(x):
        if float(x.sum()) < 0:  # Python deciding on a value: nothing a graph can record
            raise AssertionError
        return forward(x)

    model.forward = reads_values
    loss = make_elbo("trace")(model, guide)
    notes: list[str] = []
    traced = TracedLoss(loss, report=notes.append)
    with module_local_params(model, guide), fast_modules():
        torch.manual_seed(1)
        expected = loss(DATA).detach()
        torch.manual_seed(1)
        value = traced(DATA)
        again = traced(DATA)
    assert torch.equal(value.detach(), expected) and math.isfinite(again.item())
    assert len(notes) == 1 and notes[0].startswith("note: training with Pyro's eager step")
    assert "DataDependent" in notes[0] and traced.disabled is not None


def test_inputs_that_change_shape_every_step_fall_back_with_one_line():
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    loss = make_elbo("trace")(model, guide)
    notes: list[str] = []
    traced = TracedLoss(loss, report=notes.append)
    with module_local_params(model, guide), fast_modules():
        for n in range(1, THRASH_TRACES + 5):
            traced(DATA[:n])
    assert traced.traces == THRASH_TRACES and len(notes) == 1
    assert "a new graph was needed" in notes[0]


def test_a_graph_that_disagrees_with_pyro_is_not_used(monkeypatch):
    model, guide = build(ModelConfig(x_dim=10, z_dim=2, hidden=(8,)))
    loss = make_elbo("trace")(model, guide)
    notes: list[str] = []
    traced = TracedLoss(loss, report=notes.append)

    import pyro_vae.traced as module

    real = module._Graph.__call__
    monkeypatch.setattr(module._Graph, "__call__", lambda self, args: real(self, args) + 1.0)
    with module_local_params(model, guide), fast_modules():
        torch.manual_seed(1)
        expected = loss(DATA).detach()
        torch.manual_seed(1)
        value = traced(DATA)
    assert torch.equal(value.detach(), expected)  # Pyro's step, on the same draws
    assert len(notes) == 1 and "differs from Pyro's" in notes[0]


def test_simplify_keeps_every_draw_and_the_arithmetic():
    def f(w, x):
        unused = torch.randn(3)  # a draw nobody reads still moves the random stream
        y = (x @ w.t()).expand(4, 2).view(4, 2) + 0
        return (y / 1).sum() + (y / 1).sum() + unused.sum() * 0

    w, x = torch.randn(2, 5), torch.randn(4, 5)
    gm = make_fx(f, tracing_mode="fake")(w, x)
    before = len(gm.graph.nodes)
    simplify(gm)
    targets = [str(n.target) for n in gm.graph.nodes]
    assert len(gm.graph.nodes) < before
    assert not any("expand" in t or "view" in t or t == "aten.div.Tensor" for t in targets)
    assert sum("randn" in t for t in targets) == 1
    torch.manual_seed(3)
    expected = f(w, x)
    torch.manual_seed(3)
    assert torch.equal(gm(w, x), expected)


def test_the_step_option_is_checked_where_it_is_defined():
    with pytest.raises(ValueError, match="training step"):
        TrainConfig(step="compiled")
