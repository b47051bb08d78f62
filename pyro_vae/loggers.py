"""Experiment loggers of a run: TensorBoard event files (``--tensorboard``) and an MLflow run
(``--mlflow``).

Both are training hooks that :func:`pyro_vae.run.train` creates on rank 0 only. They log the
same names: each epoch's row as ``train/elbo``, ``test/elbo``, ``test/kl``, ... (the
``metrics.csv`` columns ``split_name`` as ``split/name``; the others as ``run/beta``,
``run/seconds``) at step = epoch, and the evaluation's numbers as ``final/elbo``,
``final/log_likelihood``, ``final/bits_per_dim``, ... TensorBoard also gets every step's
objective (``train/step_elbo``, at the global step), the run's options as hparams and the
figures as images; MLflow gets the options as params and the figures, ``evaluation.json``,
``metrics.csv`` and ``config.toml`` as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

EXPERIMENT = "pyro-vae"  # MLflow's experiment, unless MLFLOW_EXPERIMENT_NAME names another
MLFLOW_RUN_FILE = "mlflow.json"  # in the run folder: where its MLflow run is (resume continues it)
# descriptive entries of evaluation.json, not logged as final metrics
NOT_METRICS = frozenset({"model_config", "versions", "epochs", "n_data", "importance_samples"})


def run_params(model_config: Any, train_config: Any) -> dict[str, Any]:
    """The run's options, flat: every command-line field of both configs (not the values set
    from the data), tuples as the command line writes them (``hidden`` ``500 500``)."""
    params: dict[str, Any] = {}
    for config in (model_config, train_config):
        for f in fields(config):
            if f.metadata.get("cli", True):
                value = getattr(config, f.name)
                params[f.name] = (
                    " ".join(str(v) for v in value) if isinstance(value, tuple) else value
                )
    return params


def tag(column: str) -> str:
    """A row's column as a logger's name: ``test_elbo`` -> ``test/elbo`` (``train_``,
    ``val_``, ``test_``), ``beta`` -> ``run/beta``."""
    split, _, name = column.partition("_")
    return f"{split}/{name}" if split in ("train", "val", "test") and name else f"run/{column}"


def epoch_numbers(row: dict[str, float]) -> dict[str, float]:
    """An epoch's row by the loggers' names (not the epoch and step counters; not the NaN of
    a column not measured, such as the test columns of a run scored on validation data)."""
    return {
        tag(k): float(v)
        for k, v in row.items()
        if k not in ("epoch", "step") and math.isfinite(float(v))
    }


def final_numbers(result: dict[str, Any]) -> dict[str, float]:
    """evaluation.json's numbers as ``final/...`` (nested ones such as the kind's
    ``active_units`` as ``final/active_units/z``); finite numbers only."""
    numbers: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            numbers[prefix] = float(value)

    for key, value in result.items():
        if key not in NOT_METRICS:
            walk(f"final/{key}", value)
    return numbers


class TensorBoard:
    """Training hook writing TensorBoard event files into the run folder (``--tensorboard``):
    each epoch's numbers as scalars (``train/elbo``, ``test/elbo``, ...), and, given the
    ``run``, every step's objective per datum (``train/step_elbo``, the ELBO or the
    objective trained, as ``train/elbo``, of that step's batch; written once per epoch) and
    the run's options as hparams, whose metrics in the HParams dashboard are the folder's
    scalars (the final numbers ``final/elbo``, ``final/log_likelihood``,
    ``final/bits_per_dim``, ``test/elbo``, ...); through :meth:`figures` / :meth:`finish`,
    the run's PNGs as images. All in the run folder itself (no subfolder per hparams
    session). Needs the ``tensorboard`` package."""

    def __init__(self, out: Path, run: Any = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                f"--tensorboard needs the tensorboard package ({e}): pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(log_dir=str(out))
        # (global step, summed objective on the device, batch size) of the epoch's steps:
        # written once per epoch, so that logging them costs no host sync per step
        self.steps: list[tuple[int, torch.Tensor, int]] = []
        self._session_end: Any = None
        if run is not None:
            self.hparams(run)

    def on_step(self, trainer: Any) -> None:
        self.steps.append((trainer.step, trainer.step_loss, trainer.step_size))

    def hparams(self, run: Any) -> None:
        """The run's options as hparams (the HParams dashboard's session of this folder; it
        ends in :meth:`finish`). No experiment summary is written, as ``add_hparams`` would
        (into a subfolder): TensorBoard then lists the options of all runs under its
        ``--logdir`` and takes every scalar of a run folder (``final/elbo``,
        ``final/log_likelihood``, ``final/bits_per_dim``, ``test/elbo``, ...) as its metrics,
        where one run's experiment summary would hide the options and metrics the others
        add."""
        from torch.utils.tensorboard.summary import hparams

        values = {
            k: v if isinstance(v, int | float | str) and not isinstance(v, bool) else str(v)
            for k, v in run_params(run.model_config, run.train_config).items()
        }
        _, session_start, self._session_end = hparams(values, {})
        self.writer._get_file_writer().add_summary(session_start, run.trainer.step)
        self.writer.flush()

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        if self.steps:
            steps, losses, sizes = zip(*self.steps, strict=True)
            self.steps.clear()
            per_datum = torch.stack(losses).double().cpu() / torch.tensor(sizes).double()
            for step, loss in zip(steps, per_datum.tolist(), strict=True):
                self.writer.add_scalar("train/step_elbo", -loss, step)
        for name, value in epoch_numbers(row).items():
            self.writer.add_scalar(name, value, row["epoch"])
        self.writer.flush()

    def figures(self, paths: Sequence[Path], step: int) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            if path.suffix == ".png":
                with Image.open(path) as img:
                    array = np.asarray(img.convert("RGB"))
                self.writer.add_image(path.stem, array, step, dataformats="HWC")
        self.writer.flush()

    def finish(self, out: Path, files: Sequence[Path], result: dict[str, Any], step: int) -> None:
        """The figures, the final numbers (``final/...``) and the hparams session's end."""
        self.figures(files, step)
        for name, value in final_numbers(result).items():
            self.writer.add_scalar(name, value, step)
        if self._session_end is not None:
            self.writer._get_file_writer().add_summary(self._session_end, step)
        self.close()

    def close(self, error: BaseException | None = None) -> None:
        self.steps.clear()
        self.writer.close()


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """Recent MLflow (3.x) refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true
    (the store is in maintenance mode there); a local store (the default, or a ``file:``
    ``MLFLOW_TRACKING_URI``) is opened with the variable set, unless the user set it. Only
    while the client is built: MLflow caches the store for the process."""
    local = uri.startswith("file:") or "://" not in uri
    if not local or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def tracking_uri(out: Path) -> str:
    """Where the MLflow run goes: ``MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri``)
    where set; otherwise a local file store ``mlruns`` beside the run folder (the default
    ``runs/NAME`` logs into ``runs/mlruns``, one store for all runs in ``runs/``)."""
    import mlflow

    is_set = getattr(mlflow, "is_tracking_uri_set", None)
    if os.environ.get("MLFLOW_TRACKING_URI") or (is_set is not None and is_set()):
        return mlflow.get_tracking_uri()
    return (Path(out).resolve().parent / "mlruns").as_uri()


class MLflow:
    """Training hook logging a run to MLflow (``--mlflow``): the run's options as params at
    the start, each epoch's numbers as metrics at step = epoch (``train/elbo``,
    ``test/elbo``, ...), and at the end the final numbers (``final/...``) and the figures,
    ``evaluation.json``, ``metrics.csv`` and ``config.toml`` as artifacts. The MLflow run is
    named after the run folder, in the experiment ``pyro-vae`` (or
    ``MLFLOW_EXPERIMENT_NAME``), in the store of :func:`tracking_uri`; the run folder's
    ``mlflow.json`` says which one, and a resumed run continues it. Needs ``mlflow`` (or
    ``mlflow-skinny``)."""

    def __init__(self, out: Path, run: Any) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ImportError(
                f"--mlflow needs the mlflow package ({e}): pip install mlflow-skinny"
            ) from None
        self.out = Path(out)
        self.name = self.out.resolve().name
        self._noted = False  # mlflow.json written
        self.uri = tracking_uri(self.out)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        try:
            with _file_store_allowed(self.uri):
                self.client = MlflowClient(self.uri)
                found = self.client.get_experiment_by_name(experiment)
                self.experiment_id = (
                    found.experiment_id if found else self.client.create_experiment(experiment)
                )
            self.run_id: str | None = self._resumed() or self._created(run)
            logged = self.client.get_run(self.run_id).data.params
            params = {k: str(v) for k, v in run_params(run.model_config, run.train_config).items()}
            new = [Param(k, v) for k, v in params.items() if k not in logged]
            if new:
                self.client.log_batch(self.run_id, params=new)
            changed = {k: v for k, v in params.items() if k in logged and logged[k] != v}
            if changed:  # an MLflow param cannot change: a resumed run's changes as a tag
                self.client.set_tag(
                    self.run_id,
                    f"resumed_after_epoch_{run.trainer.epoch}",
                    ", ".join(f"{k} {logged[k]} -> {v}" for k, v in changed.items()),
                )
        except Exception as e:
            if getattr(self, "run_id", None) is not None:
                with contextlib.suppress(Exception):
                    self.client.set_terminated(self.run_id, "FAILED")
            what = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(
                f"--mlflow: cannot log to the MLflow store {self.uri} ({what}): set "
                "MLFLOW_TRACKING_URI to a store this MLflow can reach, or leave out --mlflow"
            ) from e
        print(
            f"mlflow: run {self.name} ({self.run_id}) in experiment {experiment} at {self.uri}",
            file=sys.stderr,
        )

    def _resumed(self) -> str | None:
        """The MLflow run of a resumed run folder, where it is in this store."""
        path = self.out / MLFLOW_RUN_FILE
        try:
            saved = json.loads(path.read_text())
            if saved["tracking_uri"] != self.uri:
                return None
            found = self.client.get_run(saved["run_id"])
        except Exception:  # no file, another store, a deleted run: a new MLflow run
            return None
        if found.info.lifecycle_stage != "active":
            return None
        self.client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id

    def _created(self, run: Any) -> str:
        created = self.client.create_run(
            self.experiment_id,
            run_name=self.name,
            tags={
                "pyro_vae.out": str(self.out.resolve()),
                "pyro_vae.model": run.model_config.model,
                "pyro_vae.dataset": run.data.name,
            },
        )
        return created.info.run_id

    def _log(self, numbers: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numbers.items() if math.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        self._log(epoch_numbers(row), int(row["epoch"]))
        if not self._noted:  # after the epoch's checkpoint: a refused run leaves no file
            info = {
                "tracking_uri": self.uri,
                "experiment_id": self.experiment_id,
                "run_id": self.run_id,
            }
            (self.out / MLFLOW_RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
            self._noted = True

    def finish(self, out: Path, files: Sequence[Path], result: dict[str, Any], step: int) -> None:
        """The final numbers and the artifacts; the MLflow run ends FINISHED."""
        self._log(final_numbers(result), step)
        for path in files:
            self.client.log_artifact(self.run_id, str(path), "figures")
        for name in ("evaluation.json", "metrics.csv", "config.toml", "resume.log"):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        self.close()

    def close(self, error: BaseException | None = None) -> None:
        """End the MLflow run: FINISHED, or FAILED where the run stopped with an error,
        KILLED where it was interrupted."""
        if self.run_id is not None:
            status = (
                "FINISHED"
                if error is None
                else "FAILED"
                if isinstance(error, Exception)
                else "KILLED"
            )
            self.client.set_terminated(self.run_id, status)
            self.run_id = None
