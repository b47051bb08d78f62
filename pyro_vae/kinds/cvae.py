"""``--model cvae``: the conditional VAE (Sohn et al. 2015), labels given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import data, evaluate, plots, predictive
from ..evaluate import Data
from ..guides import ConditionalNormalGuide
from ..models import CVAEModel
from ..priors import temper
from ..registry import Registry
from .base import (
    ModelKind,
    RunView,
    _local,
    decode_chunks,
    draw,
    register,
    site,
    test_indices,
)

CONDITIONAL_GUIDES: Registry = Registry("guide of the label-aware models")
CONDITIONAL_GUIDES.register("normal", ConditionalNormalGuide, "q(z | x, y), diagonal Normal")


@register
class CVAE(ModelKind):
    """z ~ p(z), x ~ p(x | z, y); guide q(z | x, y); trained and scored on (x, one-hot y)."""

    name = "cvae"
    help = "conditional VAE: x ~ p(x|z,y), guide q(z|x,y); labels given"
    needs_labels = True
    guides = CONDITIONAL_GUIDES
    conditioned_on = " | y"
    model_cls: type[CVAEModel] = CVAEModel

    def check(self, config: Any) -> None:
        super().check(config)
        self.require_mlp(config)

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        guide = self.guides.choose(config.guide)(
            config.x_dim, config.z_dim, config.num_classes, config.hidden, config.activation
        )
        model = self.model_cls(
            config.x_dim,
            config.z_dim,
            config.num_classes,
            config.hidden,
            self.prior(config, config.z_dim, None),
            self.likelihood(config),
            config.activation,
            **self.model_extras(config, guide),
        )
        return model, guide

    def model_extras(self, config: Any, guide: nn.Module) -> dict[str, Any]:
        return {}

    def views(
        self, dataset: data.Dataset, train_config: Any, num_classes: int
    ) -> tuple[data.TrainingData, Data]:
        train_y = data.one_hot(dataset.train_labels, num_classes)
        test_y = data.one_hot(dataset.test_labels, num_classes)
        return (dataset.train, train_y), (dataset.test, test_y)

    @torch.no_grad()
    def encode(self, run: RunView, test: Data) -> dict[str, Tensor]:
        with _local(run):
            return {"z": torch.cat([run.guide.point(*b) for b in evaluate.chunks(test, 1000)])}

    def figures(self, run: RunView, out: Path, draws: int = 10) -> list[Path]:
        """Reconstructions given the label, a class-conditional grid (one row per class,
        columns are prior draws of z) and style transfer (each test datum re-decoded with
        every label)."""
        idx = test_indices(run)
        x = data.as_input(run.data.test[idx])
        y = data.one_hot(run.data.test_labels[idx], run.model_config.num_classes)
        with _local(run):
            transfer = predictive.style_transfer(run.model, run.guide, x, y)
        files = [
            plots.save_grid(
                out / "reconstructions.png",
                torch.cat([x, transfer[y.bool()]]),  # decoded with its own label
                run.data.image_shape,
                ncol=len(x),
                title="test data (top) and reconstructions E[x|z,y], z = mean of q(z|x,y) (bottom)",
            ),
            *self.samples(run, out / "prior_samples.png", draws * run.model_config.num_classes),
            plots.save_figure(
                plots.style_transfer_figure(x, transfer, run.data.image_shape),
                out / "style_transfer.png",
            ),
        ]
        return files

    def samples(self, run: RunView, path: Path, n: int = 100, seed: int = 0) -> list[Path]:
        """A grid with one row per class y: E[x | z, y] for prior draws z."""
        torch.manual_seed(seed)
        k = run.model_config.num_classes
        draws = max(1, n // k)
        grid = predictive.class_conditional(run.model, k, draws)
        return [
            plots.save_grid(
                path,
                grid["mean"],
                run.data.image_shape,
                ncol=draws,
                title="E[x|z,y], z ~ p(z): one row per class y, one column per draw",
            )
        ]

    def data_view(self, run: RunView, x: Tensor, labels: Tensor | None = None) -> Data:
        return (x, self.one_hot(run, labels))

    def one_hot(self, run: RunView, labels: Tensor | None) -> Tensor:
        k = run.model_config.num_classes
        if labels is None:
            raise ValueError(
                f"--model {self.name} encodes and decodes given a label: give labels (a folder "
                f"with class subfolders, an array with labels, or --label 0..{k - 1})"
            )
        return data.one_hot(torch.as_tensor(labels).long().reshape(-1), k)

    @torch.no_grad()
    def decode(
        self, run: RunView, codes: dict[str, Tensor], labels: Tensor | None = None
    ) -> Tensor:
        z = site(codes, "z")
        return decode_chunks(run, z, self.one_hot(run, labels).to(z.device))

    @torch.no_grad()
    def sample(
        self, run: RunView, n: int, temperature: float = 1.0, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """As the VAE's, given the labels (class indices; default: the classes in turn)."""
        k = run.model_config.num_classes
        labels = torch.arange(n) % k if labels is None else torch.as_tensor(labels).reshape(-1)
        if len(labels) == 1:
            labels = labels.expand(n)
        with _local(run):
            z = draw(temper(run.model.prior(), temperature), n)
            return {"z": z, "y": labels, "mean": self.decode(run, {"z": z}, labels)}
