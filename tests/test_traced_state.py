"""The traced step (pyro_vae.traced) when Python state changes during training: a value a user's
piece reads as a plain attribute (a likelihood's temperature raised by a hook), a module swapped
for another, state the snapshot cannot see (a class attribute, a global). The traced run trains
exactly as Pyro's eager step does, or falls back to it with one line; never silently otherwise."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.objectives import make_elbo
from pyro_vae.runtime import fast_modules, module_local_params
from pyro_vae.traced import THRASH_TRACES, TracedLoss, fingerprint
from pyro_vae.train import Trainer

CPU = torch.device("cpu")
_g = torch.Generator().manual_seed(0)
# 80 data of 16 pixels: two batches of 40 per epoch (one input shape: one graph per state)
X = torch.bernoulli(torch.rand(80, 1, generator=_g).expand(80, 16).contiguous())
NOTE = "note: training with Pyro's eager step (no traced step)"


def _bernoulli(logits: torch.Tensor) -> dist.Distribution:
    return dist.Bernoulli(logits=logits, validate_args=False).to_event(1)


class Tempered(nn.Module):
    """A user's likelihood: Bernoulli(logits / T), T a plain float a hook may change. Named as
    ``--likelihood tests.test_traced_state:Tempered``, like any user piece."""

    def __init__(self, T: float = 1.0) -> None:
        super().__init__()
        self.T = T

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / self.T)


class TemperedList(nn.Module):
    """T in a list, changed in place (a non-hashable attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.T = [1.0]

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / self.T[0])


class TemperedObject(nn.Module):
    """T inside a plain object (an options namespace)."""

    def __init__(self) -> None:
        super().__init__()
        self.options = SimpleNamespace(T=1.0, name="tempered")

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / self.options.T)


class TemperedTensor(nn.Module):
    """T a plain (unregistered) tensor read as a number, changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.T = torch.tensor(1.0)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / float(self.T))


def tempered_function(temperature: list[float]) -> Any:
    """A likelihood that is a function, T held in its closure."""

    def likelihood(out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / temperature[0])

    return likelihood


class TemperedByClass(nn.Module):
    """T a class attribute: state the snapshot does not look at."""

    T = 1.0

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / type(self).T)


GLOBAL_T = 1.0


class TemperedByGlobal(nn.Module):
    """T a module global: state the snapshot does not look at."""

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / GLOBAL_T)


class TemperedPastBudget(nn.Module):
    """T the last of 5000 values: past what the snapshot looks into."""

    def __init__(self) -> None:
        super().__init__()
        self.table = [1.0] * 5000

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return _bernoulli(out / self.table[-1])


def _raise_float(lik: Any) -> None:
    lik.T += 1.0


def _raise_list(lik: Any) -> None:
    lik.T[0] += 1.0


def _raise_object(lik: Any) -> None:
    lik.options.T += 1.0


def _raise_tensor(lik: Any) -> None:
    lik.T.add_(1.0)


def _raise_closure(lik: Any) -> None:
    lik.__closure__[0].cell_contents[0] += 1.0


# where T lives: (a new likelihood, how a hook raises it)
HELD = {
    "float attribute": (Tempered, _raise_float),
    "list, in place": (TemperedList, _raise_list),
    "plain object": (TemperedObject, _raise_object),
    "tensor read as a number": (TemperedTensor, _raise_tensor),
    "function's closure": (lambda: tempered_function([1.0]), _raise_closure),
}


class OnEpoch:
    """Training hook: ``change(model)`` after every epoch."""

    def __init__(self, change: Any) -> None:
        self.change = change

    def on_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        self.change(trainer.model)


class OnStep:
    """Training hook: ``change(model, step)`` after every step."""

    def __init__(self, change: Any) -> None:
        self.change = change

    def on_step(self, trainer: Trainer) -> None:
        self.change(trainer.model, trainer.step)


def fit(
    step: str,
    likelihood: Any = None,
    hooks: tuple = (),
    epochs: int = 3,
    batch_size: int = 40,
    **train: Any,
) -> Trainer:
    """Train a small VAE with ``likelihood`` (a factory; None: Bernoulli) from seed 0."""
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=16, z_dim=2, hidden=(8,)))
    if likelihood is not None:
        del model.likelihood  # a function may take the place of a module
        model.likelihood = likelihood()
    trainer = Trainer(model, guide, TrainConfig(batch_size=batch_size, step=step, **train), CPU)
    trainer.fit(X, epochs, hooks=hooks, progress=False)
    return trainer


def elbos(trainer: Trainer) -> list[float]:
    return [row["train_elbo"] for row in trainer.history]


def notes(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if NOTE in line]


@pytest.mark.parametrize("held", sorted(HELD))
def test_a_value_raised_by_an_epoch_hook_trains_as_the_eager_step_does(held, capsys):
    new, raise_t = HELD[held]
    hook = OnEpoch(lambda model: raise_t(model.likelihood))
    eager = fit("eager", new, (hook,))
    traced = fit("traced", new, (hook,))
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    assert len(set(elbos(eager))) == 3
    # still traced: one new graph per temperature and batch shape, checked against Pyro's
    assert traced.traced is not None and traced.traced.disabled is None
    assert traced.traced.traces == 3
    assert notes(capsys) == []


def test_a_user_likelihood_named_by_import_path_is_followed_too(capsys):
    def run(step: str) -> Trainer:
        torch.manual_seed(0)
        config = ModelConfig(
            x_dim=16, z_dim=2, hidden=(8,), likelihood="tests.test_traced_state:Tempered"
        )
        model, guide = build(config)
        assert isinstance(model.likelihood, Tempered)
        trainer = Trainer(model, guide, TrainConfig(batch_size=40, step=step), CPU)
        trainer.fit(X, 3, hooks=[OnEpoch(lambda m: _raise_float(m.likelihood))], progress=False)
        return trainer

    traced, eager = run("traced"), run("eager")
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    assert traced.traced is not None and traced.traced.disabled is None
    assert notes(capsys) == []


def test_a_value_changed_mid_epoch_by_a_step_hook_is_seen_at_the_next_step(capsys):
    def change(model: nn.Module, step: int) -> None:
        if step in (1, 3):  # inside the first and second epochs (2 steps each)
            model.likelihood.T = {1: 2.5, 3: 0.5}[step]

    eager = fit("eager", Tempered, (OnStep(change),))
    traced = fit("traced", Tempered, (OnStep(change),))
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    assert traced.traced is not None and traced.traced.disabled is None
    assert notes(capsys) == []


def test_a_value_changed_every_step_falls_back_once_naming_it(capsys):
    def change(model: nn.Module, step: int) -> None:
        model.likelihood.T = 1.0 + 0.1 * step

    # 10 steps per epoch: more than THRASH_TRACES steps, each needing a new graph
    eager = fit("eager", Tempered, (OnStep(change),), epochs=2, batch_size=8)
    traced = fit("traced", Tempered, (OnStep(change),), epochs=2, batch_size=8)
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    lines = notes(capsys)
    assert len(lines) == 1, lines
    assert "a new graph was needed" in lines[0]
    assert "(the attribute model.likelihood.T changes from step to step)" in lines[0]
    assert traced.traced is not None and traced.traced.traces == THRASH_TRACES


def _raise_class(model: nn.Module) -> None:
    TemperedByClass.T += 1.0


def _raise_global(model: nn.Module) -> None:
    module = sys.modules[__name__]
    module.GLOBAL_T += 1.0  # type: ignore[attr-defined]


def _raise_past_budget(model: nn.Module) -> None:
    model.likelihood.table[-1] += 1.0


UNSEEN = {
    "class attribute": (TemperedByClass, _raise_class),
    "global": (TemperedByGlobal, _raise_global),
    "past the snapshot's budget": (TemperedPastBudget, _raise_past_budget),
}


@pytest.mark.parametrize("where", sorted(UNSEEN))
def test_a_change_the_snapshot_cannot_see_falls_back_once_at_the_next_epoch(
    where, capsys, monkeypatch
):
    monkeypatch.setattr(TemperedByClass, "T", 1.0)
    monkeypatch.setattr(sys.modules[__name__], "GLOBAL_T", 1.0)
    new, change = UNSEEN[where]
    eager = fit("eager", new, (OnEpoch(change),))
    monkeypatch.setattr(TemperedByClass, "T", 1.0)
    monkeypatch.setattr(sys.modules[__name__], "GLOBAL_T", 1.0)
    traced = fit("traced", new, (OnEpoch(change),))
    # the replay is checked again at the first step of epoch 2, before it trains on it
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    lines = notes(capsys)
    assert len(lines) == 1, lines
    assert "differs from Pyro's" in lines[0] and "when checked again (Python state" in lines[0]
    assert traced.traced is not None and traced.traced.disabled is not None


def test_a_module_swapped_by_a_hook_is_traced_anew(capsys):
    def swap_on_step(model: nn.Module, step: int) -> None:
        if step in (1, 3):  # mid-epoch: the likelihood replaced by another module
            model.likelihood = Tempered(T=step / 2.0)

    def swap_on_epoch(model: nn.Module) -> None:
        model.likelihood = Tempered(T=model.likelihood.T + 1.0)

    for hook in (OnStep(swap_on_step), OnEpoch(swap_on_epoch)):
        eager = fit("eager", Tempered, (hook,))
        traced = fit("traced", Tempered, (hook,))
        assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
        assert traced.traced is not None and traced.traced.disabled is None
    assert notes(capsys) == []


@pytest.mark.parametrize(
    "schedule",
    [{"warmup_epochs": 2}, {"elbo": "capacity", "capacity_epochs": 2}],
    ids=["beta-warmup", "capacity"],
)
def test_a_schedule_stays_exact_and_traced_with_one_graph_per_value(schedule, capsys):
    eager = fit("eager", epochs=4, **schedule)
    traced = fit("traced", epochs=4, **schedule)
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    assert traced.traced is not None and traced.traced.disabled is None
    # two values of the schedule (then held): no new graph per step or epoch
    assert traced.traced.traces == 2 and traced.traced.calls == 4 * 2
    assert traced.traced.rechecks == 2  # epochs 3 and 4 start on a graph they check again
    assert notes(capsys) == []


class Keeps(nn.Module):
    """A likelihood that keeps its last input (say, for a plot): state that changes every
    call but that no step reads back."""

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        self.last = out
        return _bernoulli(out)


def test_a_forward_that_keeps_a_tensor_stays_traced(capsys):
    eager = fit("eager", Keeps, epochs=3, batch_size=8)
    traced = fit("traced", Keeps, epochs=3, batch_size=8)
    assert elbos(traced) == pytest.approx(elbos(eager), rel=1e-5)
    assert traced.traced is not None and traced.traced.disabled is None
    assert traced.traced.traces <= 2 + 3  # not one per step: at most one more per epoch
    assert notes(capsys) == []


def test_the_loss_alone_follows_attributes_and_parameters_between_calls():
    torch.manual_seed(0)
    model, guide = build(ModelConfig(x_dim=16, z_dim=2, hidden=(8,)))
    model.likelihood = Tempered()
    loss = make_elbo("trace")(model, guide)
    lines: list[str] = []
    traced = TracedLoss(loss, report=lines.append)

    def same(seed: int) -> None:
        torch.manual_seed(seed)
        expected = loss(X).detach()
        torch.manual_seed(seed)
        assert torch.allclose(traced(X).detach(), expected, rtol=1e-5, atol=1e-4)

    with module_local_params(model, guide), fast_modules():
        same(1)
        same(2)
        model.likelihood.T = 3.0
        same(3)
        assert traced.traces == 2
        model.likelihood.T = 1.0  # back: the first graph again, not a new one
        same(4)
        assert traced.traces == 2
        last = model.decoder[-1]
        last.bias = nn.Parameter(last.bias.detach() + 1.0)  # a parameter replaced
        same(5)
        assert traced.traces == 3
    assert lines == [] and traced.disabled is None


def test_the_snapshot_follows_nested_state_and_ends_on_cycles():
    lik = TemperedList()
    cyclic: list[Any] = [1.0]
    cyclic.append(cyclic)  # a list holding itself
    lik.cycle = cyclic
    lik.table = {"a": [1, (2, 3)], "b": SimpleNamespace(x={4, 5})}
    before = fingerprint(lik)
    assert fingerprint(lik) == before and hash(before) == hash(fingerprint(lik))
    lik.table["b"].x.add(6)  # deep inside a dict, an object and a set
    assert fingerprint(lik) != before
    lik.table["b"].x.remove(6)
    assert fingerprint(lik) == before
    lik.T[0] = 2.0
    assert fingerprint(lik) != before
    lik.T[0] = 1.0
    lik.weights = np.ones(3)
    before = fingerprint(lik)
    lik.weights[1] = 2.0  # a NumPy array, in place
    assert fingerprint(lik) != before
    before = fingerprint(lik)
    lik.eval()
    assert fingerprint(lik) != before
