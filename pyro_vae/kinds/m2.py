"""``--model m2``: the semi-supervised M2 of Kingma et al. (2014)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import data, evaluate
from ..evaluate import Data
from ..guides import M2Guide
from ..models import M2Model
from ..registry import Options, Registry, non_negative, option
from .base import RunView, active_units, point_and_class, register
from .cvae import CVAE

M2_GUIDES: Registry = Registry("guide of M2")
M2_GUIDES.register("normal", M2Guide, "q(y | x) q(z | x, y), y enumerated")


class TestAccuracy:
    """Training hook: adds ``test_accuracy`` of the guide's classifier q(y|x) to each row, or
    with --val-size ``val_accuracy``, on the validation data (the run's ``validation``)."""

    def __init__(self, run: RunView) -> None:
        self.run = run

    def on_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        validation = getattr(self.run, "validation", None)
        split = "test" if validation is None else "val"
        scored = self.run.data if validation is None else validation
        row[f"{split}_accuracy"] = evaluate.accuracy(
            self.run.guide, scored.test, scored.test_labels
        )


@dataclass
class M2Options(Options):
    """Options of the semi-supervised M2."""

    aux_weight: float = option(
        46.0, "m2: weight of the classifier term alpha * log q(y|x) on labelled data", group="model"
    )

    def validate(self) -> None:
        non_negative(self, "aux_weight")


@register
class M2(CVAE):
    """y ~ Cat(1/K), z ~ p(z), x ~ p(x | z, y); guide q(y | x) q(z | x, y); trained on a
    semi-supervised set (``--labels N`` kept), scored on unlabelled test data (log p(x))."""

    name = "m2"
    options = M2Options
    help = "semi-supervised M2: y observed where labelled (--labels N), enumerated elsewhere"
    guides = M2_GUIDES
    conditioned_on = ""
    model_cls = M2Model
    best_metric = ("val_accuracy", "max")  # the classifier's, on the validation data

    def model_extras(self, config: Any, guide: nn.Module) -> dict[str, Any]:
        return {"classifier": guide.classifier, "aux_weight": config.aux_weight}

    def warnings(self, model_config: Any, train_config: Any) -> list[str]:
        if train_config.elbo == "enum":
            return []
        return [
            f"warning: --model m2 with --elbo {train_config.elbo} samples the class y of "
            "unlabelled digits (a high-variance score-function gradient); --elbo enum sums it "
            "out exactly"
        ]

    def views(
        self, dataset: data.Dataset, train_config: Any, num_classes: int
    ) -> tuple[data.TrainingData, Data]:
        if train_config.labels is None:
            raise ValueError(
                "--model m2 needs --labels N: how many training labels to keep (balanced over "
                "the classes; 0 trains without labels)"
            )
        keep = torch.zeros(dataset.train.shape[0], dtype=torch.bool, device=dataset.train.device)
        if train_config.labels:
            keep[
                data.balanced_subset(dataset.train_labels, train_config.labels, train_config.seed)
            ] = True
        train = data.SemiSupervised(
            dataset.train[keep],
            data.one_hot(dataset.train_labels[keep], num_classes),
            dataset.train[~keep],
            repeats=train_config.labelled_repeats,
        )
        return train, dataset.test

    def hooks(self, run: RunView) -> list[Any]:
        return [TestAccuracy(run)]

    def results(self, run: RunView, test: Data) -> dict[str, Any]:
        x = evaluate.as_args(test)[0]
        labels = run.data.test_labels[: x.shape[0]]
        return {
            "active_units": {"z": active_units(self.encode(run, test)["z"])},
            "accuracy": evaluate.accuracy(run.guide, x, labels),
        }

    def summary(self, result: dict[str, Any]) -> str:
        line = super().summary(result)
        if "accuracy" in result:
            line += f", accuracy of q(y|x) {result['accuracy']:.4f}"
        return line

    @torch.no_grad()
    def encode(self, run: RunView, test: Data) -> dict[str, Tensor]:
        """z at the most probable class, and q(y | x)'s probabilities."""
        return point_and_class(run, test, "y_probs")

    def data_view(self, run: RunView, x: Tensor, labels: Tensor | None = None) -> Data:
        return x  # M2 infers the class: q(y | x)

    @torch.no_grad()
    def decode(
        self, run: RunView, codes: dict[str, Tensor], labels: Tensor | None = None
    ) -> Tensor:
        """E[x | z, y] with the given labels, else the most probable class of q(y | x) where
        the codes carry ``y_probs`` (as encode writes them)."""
        if labels is None and "y_probs" in codes:
            labels = codes["y_probs"].argmax(-1)
        return super().decode(run, codes, labels)
