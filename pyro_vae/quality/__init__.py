"""Sample quality of a trained run: Fréchet distance, precision / recall and sharpness of its
prior samples and of its reconstructions, against the same test images, in a named feature
space (``pyro-vae evaluate CKPT --quality``).

Every number a likelihood gives says how well the model covers the data; none says whether
its samples look like data. This module measures the latter:

- ``fd``: Fréchet distance between Gaussians fitted to the features of the generated and of
  the real images (FID when the features are pytorch-fid's Inception; otherwise named
  ``FD-<features>``, never to be compared with published FID);
- ``precision``, ``recall``: Kynkäänniemi et al. (2019), k = 3;
- ``sharpness_ratio``: variance of the Laplacian of generated over real images (1 is as sharp
  as the data, blur is below 1).

Generated images are E[x | z] (the decoder's mean images, as in the run's figures) for
z ~ p(z) (``prior``) and z at the guide's point summary of each real test image
(``reconstructions``; the model reads them as its test data were, binarized where the run
binarizes, while the real images stay as stored). The estimate of FD is biased upwards at
small n: compare numbers at the same ``n`` only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data import Dataset, as_input
from .features import Features, resolve
from .metrics import (
    feature_distance,
    frechet_distance,
    gaussian_stats,
    precision_recall,
    sharpness,
)

DEFAULT_N = 1000
MAX_N = 100_000  # images per score: the most --quality-samples takes
K = 3


def real_images(
    run: Any, n: int, seed: int = 0, dataset: Dataset | None = None
) -> tuple[Tensor, Tensor | None]:
    """``n`` test images (n, C, H, W) in [0, 1] chosen with ``seed`` (all, if fewer), and their
    labels where the run's kind reads labels: of ``dataset`` (default: the run's data, as the
    run holds them: binarized where it binarizes)."""
    dataset = run.data if dataset is None else dataset
    test = dataset.test
    n = min(n, len(test))
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    x = as_input(test[idx.to(test.device)]).reshape(n, *run.image_shape)
    labels = None
    if getattr(run.kind, "needs_labels", False) and dataset.test_labels is not None:
        labels = dataset.test_labels[idx.to(dataset.test_labels.device)]
    return x, labels


def scores(real: Tensor, fake: Tensor, features: Features, real_features: Tensor) -> dict:
    """FD, precision, recall and sharpness ratio of ``fake`` against ``real`` images."""
    fake_features = features(fake)
    precision, recall = precision_recall(real_features, fake_features, K)
    return {
        "fd": feature_distance(real_features, fake_features),
        "precision": precision,
        "recall": recall,
        "sharpness_ratio": sharpness(fake) / max(sharpness(real), 1e-12),
    }


@torch.no_grad()
def score(
    run: Any,
    features: Features | str = "auto",
    n: int = DEFAULT_N,
    seed: int = 0,
    dataset: Dataset | None = None,
) -> dict:
    """The sample-quality numbers of ``run`` (a :class:`pyro_vae.run.Run` or any
    :class:`pyro_vae.applied.Applied`): ``{"features", "metric", "n", "prior": {fd,
    precision, recall, sharpness_ratio}, "reconstructions": {...}, "data_sharpness",
    "feature_network": {...}}``. ``dataset``: the data whose test images are the real ones
    (default: the run's own; several runs that view one data set differently, binarized or
    not, are compared against the same images by passing the grey levels)."""
    if isinstance(features, str):
        features = resolve(features, run.data if dataset is None else dataset, run.trainer.device)
    real, labels = real_images(run, n, seed, dataset)
    device = run.trainer.device
    real = real.to(device)
    if len(real) < K + 1:
        raise ValueError(
            f"the sample-quality metric needs at least {K + 1} test images; the run has {len(real)}"
        )
    real_features = features(real)
    prior = run.sample(len(real), seed=seed, labels=labels).to(device)
    recon = torch.cat(
        [
            run.reconstruct(real[i : i + 500], None if labels is None else labels[i : i + 500])
            for i in range(0, len(real), 500)
        ]
    ).to(device)
    result: dict[str, Any] = {
        "features": features.name,
        "metric": "FID" if features.name == "inception" else f"FD-{features.name}",
        "n": len(real),
        "seed": seed,
        "k": K,
        "generated": "E[x|z], the decoder's mean images",
        "prior": scores(real, prior, features, real_features),
        "reconstructions": scores(real, recon, features, real_features),
        "data_sharpness": sharpness(real),
    }
    if features.info:
        result["feature_network"] = features.info
    return result


def summary(result: dict) -> str:
    """One line of a :func:`score` result."""
    parts = []
    for what in ("prior", "reconstructions"):
        r = result[what]
        parts.append(
            f"{what} {r['fd']:.3g} (precision {r['precision']:.3f}, recall {r['recall']:.3f}, "
            f"sharpness x{r['sharpness_ratio']:.2f})"
        )
    line = f"{result['metric']}, n = {result['n']}: " + "; ".join(parts)
    net = result.get("feature_network", {})
    if "test_accuracy" in net:
        line += f"; feature network test accuracy {net['test_accuracy']:.4f}"
    return line


__all__ = [
    "Features",
    "feature_distance",
    "frechet_distance",
    "gaussian_stats",
    "precision_recall",
    "resolve",
    "score",
    "sharpness",
    "summary",
]
