"""The rules of a resumed run: which options may change, which data it may continue on, and
the log of what changed (``out/resume.log``)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import data, distributed
from .config import RESUMABLE, ModelConfig, TrainConfig, differences, from_dict


def resumed_configs(
    saved: dict[str, Any],
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    out: Path,
) -> tuple[ModelConfig, TrainConfig, dict[str, tuple[Any, Any]]]:
    """The configs a resumed run continues with: the saved ones, with the given changes
    allowed on resume; any other difference is refused, listed in one line."""
    saved_model = from_dict(ModelConfig, saved["model_config"])
    saved_train = from_dict(TrainConfig, saved["train_config"])
    given_train = train_config or saved_train
    if given_train.data_dir is None:  # not given: where the run found its data
        given_train = replace(given_train, data_dir=saved_train.data_dir)
    changes = {
        **differences(saved_model, model_config or saved_model),
        **differences(saved_train, given_train),
    }
    refused = {k: v for k, v in changes.items() if k not in RESUMABLE and not moved_data(k, *v)}
    if refused:
        listed = ", ".join(f"{k} {old!r} (given {new!r})" for k, (old, new) in refused.items())
        raise ValueError(
            f"--resume: the run in {out} was trained with other options: {listed}; resume "
            f"with its own (only {', '.join(RESUMABLE)} may change), or train a new run "
            "into another --out"
        )
    return saved_model, replace(saved_train, **{k: new for k, (_, new) in changes.items()}), changes


def moved_data(option: str, saved: Any, given: Any) -> bool:
    """Whether a change of ``option`` only says where the same data are now: a path spec of
    the same kind (``folder:``, ``array:``, ``celeba:``) at another path. The data's
    fingerprint is still checked."""
    if option != "dataset":
        return False
    old, new = data.path_spec(saved), data.path_spec(given)
    return old is not None and new is not None and old[0] == new[0]


def check_same_data(saved: dict[str, Any], dataset: data.Dataset, fingerprint: str) -> None:
    """Refuse to resume or score a run on other data than it was trained on (checkpoints
    from before fingerprints were recorded are taken as they are)."""
    recorded = saved.get("data", {}).get("fingerprint")
    if recorded is not None and recorded != fingerprint:
        raise data.DataError(
            f"the data found for this run ({dataset.name} from {dataset.source}) differ from "
            f"those it was trained on (fingerprint {fingerprint}, recorded {recorded}, from "
            f"{saved['data'].get('source')}): pass --dataset or --data-dir to say where the "
            "run's data are (evaluate --other-data scores other data on purpose)"
        )


def log_changes(out: Path, epoch: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Say, and append to ``out/resume.log``, what a resumed run changed (rank 0)."""
    if not changes or not distributed.world().main:
        return
    line = f"resumed after epoch {epoch}: " + ", ".join(
        f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()
    )
    print(line, file=sys.stderr)
    with open(out / "resume.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
