"""The training tools (issue 21, section 6): --val-size, --keep-best, --early-stop,
--lr-schedule, --clip-norm; each resumes exactly, and each bad value is one line."""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pyro
import pytest
import torch
from torch.optim import lr_scheduler

from pyro_vae import checkpoint, cli, data, guides, models
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig, differences, from_dict, unused_options
from pyro_vae.data.dataset import validation_split
from pyro_vae.train import ROW, VAL_ROW, Trainer, Watch
from tests.test_bad_inputs import refused

CPU = torch.device("cpu")
TINY = ModelConfig(z_dim=2, hidden=(16,))
# the packaged MNIST, a few hundred data: every option of this section on
FULL = TrainConfig(
    train_size=300,
    test_size=50,
    epochs=3,
    batch_size=32,
    lr=3e-3,
    ll_samples=2,
    device="cpu",
    val_size=50,
    keep_best=True,
    early_stop=5,
    lr_schedule="plateau",
    lr_patience=0,
    lr_gamma=0.5,
    clip_norm=20.0,
)


class Dip:
    """A hook making epoch ``epoch``'s validation ELBO the worst: the best epoch is then
    an earlier one, not simply the last."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch(self, trainer, row):
        if row["epoch"] == self.epoch:
            row["val_elbo"] -= 1e4


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def same_state(a: dict, b: dict) -> None:
    """Two trainer states equal tensor for tensor (history: but for the seconds)."""
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    for key, value in a["modules"].items():
        assert torch.equal(value, b["modules"][key]), key
    for pa, pb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a.get("scheduler") == b.get("scheduler")
    assert a.get("best") == b.get("best")
    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert str(drop(a["history"])) == str(drop(b["history"]))  # NaN == NaN as text


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A run with every tool on, epoch 3's validation ELBO dipped (so the best is epoch 2);
    records the sizes of the data the trainer scored during training."""
    out = tmp_path_factory.mktemp("full") / "run"
    scored = []
    original = Trainer.test_elbo_terms

    def spy(self, x):
        scored.append(data.num_data(x))
        return original(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "test_elbo_terms", spy)
        pyro.set_rng_seed(0)
        run, result = runs.train(TINY, FULL, out, hooks=[Dip(3)], progress=False)
    return run, result, out, scored


# -- the validation split ------------------------------------------------------------------


def labelled_set(n: int = 100, classes: int = 4) -> data.Dataset:
    train = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    test = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return data.Dataset("t", train, test, (1, 2, 2), "made up", labels, torch.zeros(10).long())


def test_the_validation_split_is_seeded_balanced_and_disjoint():
    ds = labelled_set()
    rest, val = validation_split(ds, 20, seed=0)
    ids = lambda d: d[:, 0, 0, 0].long()  # noqa: E731  (each datum's index)
    assert len(val.test) == 20 and len(rest.train) == 80
    assert torch.equal(val.test, val.train) and torch.equal(val.test_labels, val.train_labels)
    assert set(ids(val.test).tolist()).isdisjoint(ids(rest.train).tolist())
    assert sorted([*ids(val.test).tolist(), *ids(rest.train).tolist()]) == list(range(100))
    assert torch.equal(val.test_labels, ids(val.test) % 4)  # labels travel with their data
    assert torch.equal(rest.train_labels, ids(rest.train) % 4)
    assert torch.bincount(val.test_labels).tolist() == [5, 5, 5, 5]
    assert torch.equal(rest.test, ds.test)  # the test split is untouched
    again, other = validation_split(ds, 20, seed=0)[1], validation_split(ds, 20, seed=1)[1]
    assert torch.equal(again.test, val.test) and not torch.equal(other.test, val.test)
    assert len(validation_split(ds, 0.25, seed=0)[1].test) == 25  # a fraction
    unlabelled = replace(ds, train_labels=None, test_labels=None)
    assert len(validation_split(unlabelled, 0.1)[1].test) == 10
    with pytest.raises(ValueError, match="leaves none to train on"):
        validation_split(ds, 100)


def test_validation_is_watched_each_epoch_and_the_test_set_only_at_the_end(full):
    run, _, out, scored = full
    assert len(run.data.train) == 250 and len(run.validation.test) == 50
    assert scored == [50, 50, 50]  # the validation data, once an epoch; never the test data
    table = rows(out)
    assert list(table[0]) == [*ROW, *VAL_ROW, "lr"]
    for r in table:
        assert all(r[f"test_{k}"] == "nan" for k in ("elbo", "reconstruction", "kl"))
        rec, kl, elbo = (float(r[k]) for k in ("val_reconstruction", "val_kl", "val_elbo"))
        assert math.isfinite(elbo) and (r["epoch"] == "3" or abs(rec - kl - elbo) < 1e-3)
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["n_data"] == 50 and math.isfinite(saved["elbo"])  # the test set, at the end
    watched = saved["watched"]
    assert watched["metric"] == "val_elbo" and watched["validation_data"] == 50
    assert watched["best_epoch"] == 2 and watched["best_checkpoint"] == "best.pt"
    assert watched["stopped_early"] is False


def test_keep_best_writes_the_best_epochs_checkpoint(full, tmp_path, capsys):
    out = full[2]
    table = rows(out)
    best_epoch = max(table, key=lambda r: float(r["val_elbo"]))["epoch"]
    best = checkpoint.load(out / "best.pt")
    assert best["trainer"]["epoch"] == int(best_epoch) == 2
    assert best["trainer"]["best"]["value"] == max(float(r["val_elbo"]) for r in table)
    # the run stopped at epoch 2 holds the same weights
    pyro.set_rng_seed(0)
    short, _ = runs.train(TINY, replace(FULL, epochs=2), tmp_path / "two", progress=False)
    for key, value in short.trainer.state_dict()["modules"].items():
        assert torch.equal(value, best["trainer"]["modules"][key]), key
    assert cli.main(["evaluate", str(out / "best.pt"), "--samples", "2", "--device", "cpu"]) == 0
    assert "2 epochs" in capsys.readouterr().out


def test_everything_resumes_exactly(full, tmp_path):
    straight, _, out, _ = full
    folder = tmp_path / "resumed"
    pyro.set_rng_seed(0)
    runs.train(TINY, replace(FULL, epochs=2), folder, hooks=[Dip(3)], progress=False)
    resumed, _ = runs.train(TINY, FULL, folder, resume=True, hooks=[Dip(3)], progress=False)
    same_state(straight.trainer.state_dict(), resumed.trainer.state_dict())
    assert rows(out)[-1]["lr"] == rows(folder)[-1]["lr"]
    a, b = (checkpoint.load(f / "best.pt")["trainer"] for f in (out, folder))
    same_state(a, b)


def test_early_stop_ends_training_and_the_run_still_finishes(tmp_path, capsys):
    class Flat:  # a validation ELBO that never improves after epoch 1
        def on_epoch(self, trainer, row):
            row["val_elbo"] = -100.0

    config = replace(FULL, epochs=8, early_stop=2, lr_schedule="none")
    run, result = runs.train(TINY, config, tmp_path / "r", hooks=[Flat()], progress=False)
    err = capsys.readouterr().err
    assert run.trainer.epoch == 3 and len(rows(tmp_path / "r")) == 3
    assert "early stop: val_elbo has not improved for 2 epochs" in err
    assert "stopped after epoch 3 of 8" in err
    assert result["watched"]["stopped_early"] is True
    assert {"evaluation.json", "best.pt", "curves.png"} <= {
        p.name for p in (tmp_path / "r").iterdir()
    }
    # resumed, it stays stopped (with a larger patience it would go on)
    again, _ = runs.train(TINY, config, tmp_path / "r", resume=True, hooks=[Flat()], progress=False)
    assert again.trainer.epoch == 3 and "early stop (reached before)" in capsys.readouterr().err


def test_m2_keeps_the_best_accuracy_on_the_validation_data(tmp_path):
    config = replace(FULL, epochs=1, labels=50, lr_schedule="none", clip_norm=None)
    run, result = runs.train(
        ModelConfig(model="m2", z_dim=2, hidden=(16,)), config, tmp_path / "m2", progress=False
    )
    row = run.trainer.history[0]
    assert "val_accuracy" in row and "test_accuracy" not in row
    assert result["watched"]["metric"] == "val_accuracy" and "accuracy" in result
    assert run.trainer.best["value"] == row["val_accuracy"]


def test_cvae_scores_its_view_of_the_validation_data(tmp_path):
    config = replace(FULL, epochs=1, keep_best=False, early_stop=None, lr_schedule="none")
    run, _ = runs.train(
        ModelConfig(model="cvae", z_dim=2, hidden=(16,)), config, tmp_path / "c", progress=False
    )
    x, y = run.val_data
    assert x.shape[0] == y.shape[0] == 50 and y.shape[1] == 10
    assert math.isfinite(run.trainer.history[0]["val_elbo"])


# -- the trainer's pieces --------------------------------------------------------------------


def blobs(n: int = 96, d: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.rand(n, 1, generator=gen).expand(n, d).clone(), generator=gen)


def trainer(**options) -> Trainer:
    pyro.set_rng_seed(0)
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    return Trainer(model, guide, TrainConfig(batch_size=32, lr=1e-2, **options), CPU)


class Fake:
    """A made-up metric per epoch (to drive the watched value exactly)."""

    def __init__(self, values):
        self.values = values

    def on_epoch(self, trainer, row):
        row["fake"] = self.values[row["epoch"] - 1]


def test_watch_follows_the_best_value_and_epochs_since():
    t = trainer()
    seen = []
    for epoch, value in enumerate([1.0, 3.0, 2.0, 3.0, 4.0], 1):
        t.epoch = epoch
        seen.append((t.watch(value, "m"), t.best["epoch"], t.best["since"]))
    assert seen == [(True, 1, 0), (True, 2, 0), (False, 2, 1), (False, 2, 2), (True, 5, 0)]
    t.best = None
    for epoch, value in enumerate([5.0, 4.0, 6.0], 1):
        t.epoch = epoch
        t.watch(value, "loss", "min")
    assert t.best == {"metric": "loss", "mode": "min", "value": 4.0, "epoch": 2, "since": 1}


SCHEDULES = {
    "cosine": ({"lr_cosine_epochs": 4}, lambda o: lr_scheduler.CosineAnnealingLR(o, 4)),
    "step": ({"lr_step_epochs": 2, "lr_gamma": 0.5}, lambda o: lr_scheduler.StepLR(o, 2, 0.5)),
    "plateau": (
        {"lr_patience": 0, "lr_gamma": 0.5},
        lambda o: lr_scheduler.ReduceLROnPlateau(
            o, "max", 0.5, patience=0, threshold=0.0, threshold_mode="abs"
        ),
    ),
}
FAKE = [1.0, 2.0, 2.0, 1.0, 3.0, 3.0]


@pytest.mark.parametrize("name", SCHEDULES)
def test_lr_schedules_set_the_rate_as_torchs_scheduler(name):
    options, make = SCHEDULES[name]
    t = trainer(lr_schedule=name, **options)
    history = t.fit(blobs(), 6, hooks=[Fake(FAKE), Watch("fake")], progress=False)
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    scheduler, expected = make(reference), []
    for value in FAKE:
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        scheduler.step(value) if name == "plateau" else scheduler.step()
    assert [row["lr"] for row in history] == expected
    assert t.optimizer.param_groups[0]["lr"] == reference.param_groups[0]["lr"]
    assert len(set(expected)) > 2  # the rate did change


def test_no_schedule_no_lr_column_and_plateau_watches_training_elbo_without_validation():
    assert "lr" not in trainer().fit(blobs(), 1, progress=False)[0]
    t = trainer(lr_schedule="plateau")
    t.fit(blobs(), 2, progress=False)
    assert (
        t.best["metric"] == "train_elbo"
        and t.best["value"] == t.history[t.best["epoch"] - 1]["train_elbo"]
    )


def test_clip_norm_bounds_the_gradient_norm():
    def norms(t: Trainer) -> list[float]:
        seen = []

        class Grads:
            def on_step(self, tr):
                grads = [p.grad for g in tr.optimizer.param_groups for p in g["params"]]
                seen.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

        t.fit(blobs(), 2, hooks=[Grads()], progress=False)
        return seen

    assert max(norms(trainer())) > 2.0  # the bound below does bite
    assert max(norms(trainer(clip_norm=2.0))) <= 2.0 * (1 + 1e-5)


@pytest.mark.parametrize("name", SCHEDULES)
def test_trainer_state_resumes_schedules_and_clipping_exactly(name):
    options = {"lr_schedule": name, "clip_norm": 2.0, **SCHEDULES[name][0]}
    x, val = blobs(), blobs(32)
    hooks = lambda: [Fake(FAKE), Watch("fake")]  # noqa: E731
    straight = trainer(**options)
    straight.fit(x, 5, val=val, hooks=hooks(), progress=False)
    first = trainer(**options)
    first.fit(x, 2, val=val, hooks=hooks(), progress=False)
    saved = copy.deepcopy(first.state_dict())
    resumed = trainer(**options)
    resumed.load_state_dict(saved)
    resumed.fit(x, 5, val=val, hooks=hooks(), progress=False)
    same_state(straight.state_dict(), resumed.state_dict())
    assert list(straight.history[0]) == [*ROW, *VAL_ROW, "lr", "fake"]
    # a changed --lr on resume scales the schedule
    doubled = Trainer(resumed.model, resumed.guide, replace(resumed.config, lr=2e-2), CPU)
    doubled.load_state_dict(saved)
    lr = first.optimizer.param_groups[0]["lr"]
    assert doubled.optimizer.param_groups[0]["lr"] == pytest.approx(2 * lr)


# -- bad input: one line each, nothing on disk changed ----------------------------------------

BAD = [
    (["--val-size", "0"], {"val_size": 0.0}, r"val_size must be a count >= 1 or a fraction"),
    (["--val-size", "-5"], {"val_size": -5.0}, r"val_size must be a count >= 1 or a fraction"),
    (["--val-size", "1.5"], {"val_size": 1.5}, r"in \(0, 1\); got 1.5"),
    (["--val-size", "nan"], {"val_size": math.nan}, "val_size must be a count"),
    (["--val-size", "inf"], {"val_size": math.inf}, "val_size must be a count"),
    (["--keep-best"], {"keep_best": True}, "--keep-best needs --val-size: choosing epochs"),
    (["--early-stop", "3"], {"early_stop": 3}, "--early-stop needs --val-size"),
    (["--early-stop", "0"], {"early_stop": 0}, "early_stop must be at least 1"),
    (["--val-size", "10", "--early-stop", "-1"], {"early_stop": -1}, "early_stop must be at"),
    (["--lr-schedule", "linear"], {"lr_schedule": "linear"}, "learning-rate schedule 'linear'"),
    (["--lr-step-epochs", "0"], {"lr_step_epochs": 0}, "lr_step_epochs must be at least 1"),
    (["--lr-cosine-epochs", "0"], {"lr_cosine_epochs": 0}, "lr_cosine_epochs must be at"),
    (["--lr-patience", "-1"], {"lr_patience": -1}, "lr_patience must be >= 0"),
    (["--lr-gamma", "0"], {"lr_gamma": 0.0}, r"lr_gamma must lie in \(0, 1\)"),
    (["--lr-gamma", "1"], {"lr_gamma": 1.0}, r"lr_gamma must lie in \(0, 1\)"),
    (["--lr-gamma", "nan"], {"lr_gamma": math.nan}, r"lr_gamma must lie in \(0, 1\)"),
    (["--clip-norm", "0"], {"clip_norm": 0.0}, "clip_norm must be a finite number > 0"),
    (["--clip-norm", "-1"], {"clip_norm": -1.0}, "clip_norm must be a finite number > 0"),
    (["--clip-norm", "inf"], {"clip_norm": math.inf}, "clip_norm must be a finite number > 0"),
]


@pytest.mark.parametrize("flags, fields, message", BAD, ids=lambda v: None)
def test_bad_values_are_one_line(flags, fields, message, capsys, tmp_path):
    out = tmp_path / "run"
    line = refused(capsys, ["train", *flags, "--out", str(out)], message, tmp_path)
    assert not out.exists()
    with pytest.raises(ValueError) as err:
        TrainConfig(**({"val_size": 10.0} if "--val-size" in flags else {}) | fields)
    assert str(err.value).splitlines()[0] == line.removeprefix("pyro-vae: error: ")


def test_a_validation_set_as_large_as_the_training_data_is_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--train-size", "300", "--val-size", "300", "--device", "cpu"]
    refused(capsys, [*argv, "--out", str(out)], "--val-size 300 takes 300 of the 300", tmp_path)
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--val-size", "0.2"], "val_size"),
        (["--lr-schedule", "cosine"], "lr_schedule"),
        (["--lr-gamma", "0.1"], "lr_gamma"),
        (["--clip-norm", "1"], "clip_norm"),
    ],
)
def test_resume_refuses_changing_how_the_run_trains(flags, field, full, capsys, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(full[2], folder)
    refused(
        capsys,
        ["train", "--resume", "--out", str(folder), *flags],
        rf"trained with other options: {field} ",
        folder,
    )


def test_resume_may_change_keep_best_and_early_stop(full):
    saved = checkpoint.load(full[2] / "checkpoint.pt")
    given = replace(FULL, keep_best=False, early_stop=9)
    _, config, changes = runs.resumed_configs(saved, None, given, full[2])
    assert set(changes) == {"keep_best", "early_stop"} and config.early_stop == 9


def test_options_of_pieces_a_run_does_not_use_are_not_differences(full):
    """A run records every piece's options; one that recorded an older default of a piece it
    does not use (vaegan_gamma for a bernoulli run, tc_weight for trace) still resumes."""
    saved = checkpoint.load(full[2] / "checkpoint.pt")
    model = from_dict(ModelConfig, saved["model_config"])
    assert model.likelihood == "bernoulli" and FULL.elbo == "trace"
    older = {
        **saved,
        "model_config": {**saved["model_config"], "vaegan_gamma": 0.01, "prior_components": 3},
        "train_config": {**saved["train_config"], "tc_weight": 9.0},
    }
    _, config, changes = runs.resumed_configs(older, model, FULL, full[2])
    assert changes == {} and config.tc_weight == 9.0  # the run's own record is kept
    assert {"vaegan_gamma", "prior_components"} <= unused_options(model)
    assert "tc_weight" in unused_options(FULL) and "tc_weight" not in unused_options(
        replace(FULL, elbo="tcvae")
    )
    # an option of a piece the run does use is still a difference, and refused
    vaegan = replace(model, likelihood="vaegan", vaegan_gamma=0.5)
    assert differences(replace(vaegan, vaegan_gamma=1.0), vaegan) == {"vaegan_gamma": (1.0, 0.5)}
