"""The experiment loggers (issue 21): TensorBoard's per-step scalars and hparams, and the MLflow
run of ``--mlflow`` (params, per-epoch metrics, figures), both read back from what they wrote."""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from pyro_vae import cli, data
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig

TINY_MODEL = ModelConfig(z_dim=2, hidden=(16,))
# 200 training data in batches of 64: 4 steps per epoch, the last one of 8 data
TINY = TrainConfig(
    dataset="mnist",
    train_size=200,
    test_size=40,
    epochs=2,
    batch_size=64,
    ll_samples=4,
    device="cpu",
)
TINY_ARGS = [
    *("--train-size", "200", "--test-size", "40", "--batch-size", "64", "--epochs", "1"),
    *("--z-dim", "2", "--hidden", "16", "--ll-samples", "0", "--device", "cpu", "--no-progress"),
]
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


@pytest.fixture(autouse=True)
def _no_outside_mlflow(monkeypatch):
    """An MLflow setting of the machine's environment must not steer the runs here."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))


def test_tensorboard_logs_every_step_and_the_hparams(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    out = tmp_path / "tb"
    run, result = runs.train(TINY_MODEL, replace(TINY, tensorboard=True), out, progress=False)
    assert [p.name for p in out.iterdir() if p.is_dir()] == []  # hparams: no subfolder
    assert "_step" not in vars(run.trainer)  # the step recorder is taken off again
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()

    steps = acc.Scalars("train/step_elbo")
    assert [e.step for e in steps] == list(range(1, 9)) == list(range(1, run.trainer.step + 1))
    # each step's objective per datum, weighted by its batch, is the epoch's train ELBO
    sizes = [64, 64, 64, 8]
    for epoch, row in enumerate(rows(out)):
        values = [e.value for e in steps[4 * epoch : 4 * epoch + 4]]
        mean = sum(v * n for v, n in zip(values, sizes, strict=True)) / 200
        assert mean == pytest.approx(float(row["train_elbo"]), rel=1e-5)
    assert [e.step for e in acc.Scalars("test/elbo")] == [1, 2]  # per epoch, as before

    plugin = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in acc.PluginTagToContent("hparams").items()
    }
    start = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert start["z_dim"].number_value == 2 and start["hidden"].string_value == "16"
    assert start["dataset"].string_value == "mnist" and start["elbo"].string_value == "trace"
    assert start["lr"].number_value == pytest.approx(1e-3)
    assert start["tensorboard"].string_value == "True"
    # no experiment summary: TensorBoard takes the scalars of this folder as the session's
    # metrics, the final numbers among them, and lists the options of every run it is shown
    assert set(plugin) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    for tag, key in (("final/elbo", "elbo"), ("final/log_likelihood", "log_likelihood")):
        (final,) = acc.Scalars(tag)
        assert (final.step, final.value) == (2, pytest.approx(result[key], rel=1e-5))
    end = plugin["_hparams_/session_end_info"].session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install mlflow-skinny)")
def test_mlflow_logs_params_metrics_and_figures_and_resume_continues_the_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "runs" / "tiny"
    _, result = runs.train(TINY_MODEL, replace(TINY, mlflow=True), out, progress=False)
    store = tmp_path / "runs" / "mlruns"  # the default: beside the run folder
    assert store.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store so
    client = MlflowClient(store.as_uri())
    experiment = client.get_experiment_by_name("pyro-vae")
    (found,) = client.search_runs([experiment.experiment_id])
    run_id = found.info.run_id
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == run_id
    assert found.info.run_name == "tiny" and found.info.status == "FINISHED"
    params = found.data.params
    assert {k: params[k] for k in ("model", "z_dim", "hidden", "epochs", "lr", "dataset")} == {
        "model": "vae",
        "z_dim": "2",
        "hidden": "16",
        "epochs": "2",
        "lr": "0.001",
        "dataset": "mnist",
    }
    history = client.get_metric_history(run_id, "test/elbo")
    assert [(m.step, m.value) for m in history] == [
        (i + 1, pytest.approx(float(r["test_elbo"]))) for i, r in enumerate(rows(out))
    ]
    assert len(client.get_metric_history(run_id, "train/elbo")) == 2
    assert found.data.metrics["final/elbo"] == pytest.approx(result["elbo"])
    assert found.data.metrics["final/log_likelihood"] == pytest.approx(result["log_likelihood"])
    artifacts = {f.path for f in client.list_artifacts(run_id)}
    assert {"evaluation.json", "metrics.csv", "config.toml", "figures"} <= artifacts
    figures = {f.path for f in client.list_artifacts(run_id, "figures")}
    assert {"figures/curves.png", "figures/reconstructions.png"} <= figures
    local = client.download_artifacts(run_id, "evaluation.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["elbo"] == pytest.approx(result["elbo"])

    # resumed for a third epoch: the same MLflow run goes on, its changed option as a tag
    runs.train(None, replace(TINY, epochs=3, mlflow=True), out, resume=True, progress=False)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run_id and again.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "test/elbo")] == [1, 2, 3]
    assert again.data.tags["resumed_after_epoch_2"] == "epochs 2 -> 3"
    assert again.data.params["epochs"] == "2"  # an MLflow param is written once


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install mlflow-skinny)")
def test_mlflow_tracking_uri_is_respected_and_a_failed_run_ends_failed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    elsewhere = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the user's own file store

    class Boom:
        def on_epoch(self, trainer, row):
            raise RuntimeError("boom")

    out = tmp_path / "runs" / "boom"
    config = replace(TINY, epochs=1, ll_samples=0, mlflow=True)
    with pytest.raises(RuntimeError, match="boom"):
        runs.train(TINY_MODEL, config, out, hooks=[Boom()], progress=False)
    assert not out.exists() and not (tmp_path / "runs" / "mlruns").exists()
    client = MlflowClient(elsewhere)
    (found,) = client.search_runs([client.get_experiment_by_name("pyro-vae").experiment_id])
    assert found.info.run_name == "boom" and found.info.status == "FAILED"


def test_mlflow_without_the_package_is_one_line_before_the_data(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )

    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded")

    monkeypatch.setattr(data, "load", no_data)
    out = tmp_path / "runs" / "refused"
    capsys.readouterr()
    assert cli.main(["train", "--mlflow", *TINY_ARGS, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae: error: --mlflow needs the mlflow "), err
    assert "pip install mlflow-skinny" in err[0]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="needs the mlflow package"):
        TrainConfig(mlflow=True).check_packages()
