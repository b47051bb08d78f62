"""Feature networks for the sample-quality metric.

FID's Inception features need weights this project cannot ship or download; a data set's own
classifier is always at hand. :class:`FeatureNet` is a small convolutional classifier trained
once per data set (``pyro-vae features --dataset mnist``, or on demand by ``pyro-vae evaluate
--quality``) on its training labels: the digit or object classes (MNIST, Fashion-MNIST,
CIFAR-10, folders of class sub-folders), or CelebA's 40 binary attributes. It is cached under
``$PYRO_VAE_CACHE/features`` keyed by the data's fingerprint and its settings, with its test
accuracy, which every score reports beside the distance (``$PYRO_VAE_CACHE`` is the image
cache's folder, by default ``~/.cache/pyro-vae/images``). Its penultimate layer gives the
features, and the metric is named after them (``FD-mnist-classes``, ``FD-celeba-attributes``)
so it is never read as published FID.

Other features: ``inception:PATH`` (pytorch-fid's weights file: then the distance is FID) or
a TorchScript file mapping images (n, C, H, W) in [0, 1] to features (n, d).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import checkpoint
from ..data import Dataset, as_input, short_name
from ..data.cache import cache_dir
from ..nets import conv_levels
from ..runtime import progress_bar

FORMAT = "pyro-vae-features"
REVISION = 2  # 2: batch norm (without it CelebA's attributes stayed at the base rates)
CHANNELS = (32, 64, 128)
WIDTH = 128  # features: the penultimate layer's units
EPOCHS = 5
BATCH = 128


class FeatureNet(nn.Module):
    """Images (n, C, H, W) in [0, 1] -> ``width`` features -> ``outputs`` logits: per level of
    :func:`pyro_vae.nets.conv_levels`, a 3x3 convolution and a stride-2 4x4 one (32, 64, 128
    channels), each followed by batch norm and a ReLU; then a dense layer of ``width`` ReLU
    units (the features) and a linear head. Used in eval mode only once trained (batch norm
    then applies its running statistics: an image's features do not depend on its batch)."""

    def __init__(self, image_shape: tuple[int, ...], outputs: int, width: int = WIDTH) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        sides = conv_levels(self.image_shape)
        blocks: list[nn.Module] = []
        c_in = self.image_shape[0]
        for i in range(1, len(sides)):
            c = CHANNELS[min(i - 1, len(CHANNELS) - 1)]
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                    nn.Conv2d(c, c, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                )
            )
            c_in = c
        h, w = sides[-1]
        self.blocks = nn.ModuleList(blocks)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, width), nn.ReLU())
        self.head = nn.Linear(width, outputs)

    @property
    def levels(self) -> int:
        """The number of convolution levels."""
        return len(self.blocks)

    def taps(self, images: Tensor, levels: tuple[int, ...]) -> list[Tensor]:
        """The activations (n, channels, h, w) after each of ``levels`` (1 is the first), and
        those of the dense layer (n, width) for level ``self.levels + 1``."""
        h, out = images.reshape(-1, *self.image_shape), []
        for level, block in enumerate([*self.blocks, self.dense], start=1):
            if level > max(levels):
                break
            h = block(h)
            if level in levels:
                out.append(h)
        return out

    def features(self, images: Tensor) -> Tensor:
        return self.taps(images, (self.levels + 1,))[0]

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


@dataclass
class Features:
    """A feature map for the metric: ``fn`` maps images (n, C, H, W) in [0, 1] to (n, d);
    ``name`` names the metric (``FD-<name>``); ``info`` says what the features are (and the
    feature network's test accuracy where it was trained here)."""

    name: str
    fn: Callable[[Tensor], Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def __call__(self, images: Tensor, batch: int = 500) -> Tensor:
        return torch.cat([self.fn(b).flatten(1).float() for b in images.split(batch)])


def task(dataset: Dataset) -> tuple[str, Tensor, Tensor]:
    """What a feature network of ``dataset`` learns: ``("attributes", train, test)`` with
    CelebA's binary attributes, else ``("classes", train_labels, test_labels)``; one line
    where the data hold neither."""
    if dataset.train_attributes is not None and dataset.test_attributes is not None:
        return "attributes", dataset.train_attributes.float(), dataset.test_attributes.float()
    if dataset.train_labels is not None and dataset.test_labels is not None:
        return "classes", dataset.train_labels.long(), dataset.test_labels.long()
    raise ValueError(
        f"{dataset.name} has no labels or attributes to train a feature network on: give "
        "--features inception:PATH (pytorch-fid's weights) or a TorchScript feature network"
    )


def settings(dataset: Dataset, seed: int) -> dict[str, Any]:
    """What a cached feature network is keyed on (its epochs are in its info)."""
    return {
        "revision": REVISION,
        "data": dataset.fingerprint(),
        "image_shape": list(dataset.image_shape),
        "channels": list(CHANNELS),
        "width": WIDTH,
        "batch": BATCH,
        "seed": seed,
    }


def cache_path(dataset: Dataset, seed: int = 0) -> Path:
    """Where the feature network of ``dataset`` is cached."""
    key = hashlib.sha256(json.dumps(settings(dataset, seed), sort_keys=True).encode())
    return cache_dir() / "features" / f"{short_name(dataset.name)}-{key.hexdigest()[:16]}.pt"


def train(
    dataset: Dataset,
    epochs: int = EPOCHS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> tuple[FeatureNet, dict[str, Any]]:
    """Train :class:`FeatureNet` on ``dataset``'s training labels (cross-entropy over the
    classes, or per-attribute logistic loss) with Adam 1e-3, batches of 128; returns it with
    its test accuracy (and the majority-class accuracy it should beat)."""
    with torch.enable_grad():  # also when called from inside an evaluation
        return _train(dataset, epochs, seed, torch.device(device), progress)


def _train(
    dataset: Dataset, epochs: int, seed: int, device: torch.device, progress: bool | None
) -> tuple[FeatureNet, dict[str, Any]]:
    kind, y_train, y_test = task(dataset)
    outputs = y_train.shape[1] if kind == "attributes" else int(y_train.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureNet(dataset.image_shape, outputs).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_train = dataset.train
    loss_fn = F.binary_cross_entropy_with_logits if kind == "attributes" else F.cross_entropy
    n = len(x_train)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        net.train()
        bar = progress_bar(
            order.split(BATCH),
            total=-(-n // BATCH),
            desc=f"feature network, epoch {epoch + 1}/{epochs}",
            unit="step",
            progress=progress,
        )
        for idx in bar:
            xb = as_input(x_train[idx.to(x_train.device)].to(device))
            loss = loss_fn(net(xb), y_train[idx.to(y_train.device)].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    info = {"task": kind, **accuracy(net, dataset.test, y_test, kind, device)}
    info |= {"epochs": epochs, "train_data": n, "test_data": len(dataset.test)}
    return net.cpu(), info


@torch.no_grad()
def accuracy(
    net: FeatureNet, x: Tensor, y: Tensor, kind: str, device: torch.device
) -> dict[str, float]:
    """Test accuracy: top-1 over classes, or the mean over attributes (each thresholded at
    0.5), beside the accuracy of always answering the training majority."""
    logits = torch.cat([net(as_input(xb.to(device))).cpu() for xb in x.split(1000)])
    y = y.cpu()
    if kind == "attributes":
        correct = ((logits > 0).float() == y).float().mean().item()
        majority = torch.maximum(y.mean(0), 1 - y.mean(0)).mean().item()
    else:
        correct = (logits.argmax(1) == y).float().mean().item()
        majority = y.bincount().max().item() / len(y)
    return {"test_accuracy": correct, "majority_accuracy": majority}


def save(path: Path, net: FeatureNet, info: dict[str, Any], dataset: Dataset) -> Path:
    payload = {
        "format": FORMAT,
        "revision": REVISION,
        "image_shape": list(net.image_shape),
        "outputs": net.head.out_features,
        "width": net.head.in_features,
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint(),
        "info": info,
        "state_dict": net.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return checkpoint.write_atomically(path, lambda f: torch.save(payload, f))


def load(path: Path) -> tuple[FeatureNet, dict[str, Any]]:
    """A cached feature network and its info; one line for a file that is not one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError("not a pyro-vae feature network")
        net = FeatureNet(tuple(payload["image_shape"]), payload["outputs"], payload["width"])
        net.load_state_dict(payload["state_dict"])
    except Exception as e:
        raise ValueError(
            f"{path} is not a usable feature network ({type(e).__name__}: {e}); delete it and "
            "run pyro-vae features again"
        ) from None
    return net.eval(), dict(payload["info"])


def trained(
    dataset: Dataset,
    epochs: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    retrain: bool = False,
    progress: bool | None = None,
) -> tuple[FeatureNet, dict[str, Any], Path]:
    """The feature network of ``dataset``: from the cache (trained for ``epochs``, or for
    any number when None), or trained now (``epochs``, default :data:`EPOCHS`) and cached."""
    path = cache_path(dataset, seed)
    if path.is_file() and not retrain:
        try:
            net, info = load(path)
            if epochs is None or info.get("epochs") == epochs:
                return net, info, path
        except ValueError as e:
            print(f"{e}: training it again", file=sys.stderr)
    epochs = EPOCHS if epochs is None else epochs
    print(f"training the feature network of {dataset.name} ({epochs} epochs)", file=sys.stderr)
    net, info = train(dataset, epochs, seed, device, progress)
    try:
        save(path, net, info, dataset)
    except OSError as e:
        print(f"the feature network was not cached ({e})", file=sys.stderr)
    return net, info, path


def auto_seed(spec: str) -> int:
    """The seed of an ``auto`` or ``auto:SEED`` feature network (0 for ``auto``)."""
    seed = spec.partition(":")[2] or "0"
    if not seed.isdigit():
        raise ValueError(
            f"--features {spec!r}: auto:SEED takes a whole number >= 0 (e.g. auto:1, a second "
            "network trained from another seed)"
        )
    return int(seed)


def resolve(spec: str, dataset: Dataset, device: torch.device | str = "cpu") -> Features:
    """The features ``spec`` names: ``auto`` (the data set's own network, trained here and
    cached), ``auto:SEED`` (the same network trained from another seed: an independent judge of
    a model trained to match the first one's features, as the perceptual likelihood's default
    does), ``inception:PATH`` (pytorch-fid's weights: FID), or a TorchScript file."""
    device = torch.device(device)
    if spec == "auto" or spec.startswith("auto:"):
        seed = auto_seed(spec)
        net, info, path = trained(dataset, seed=seed, device=device)
        net = net.to(device)
        name = f"{short_name(dataset.name)}-{info['task']}" + (f"-seed{seed}" if seed else "")
        return Features(name, net.features, {"network": str(path), "seed": seed, **info})
    if spec.startswith("inception:"):
        from .inception import load_fid_inception

        path = spec.removeprefix("inception:")
        net = load_fid_inception(path).to(device)
        return Features("inception", net, {"network": path, "weights": "pytorch-fid"})
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"--features {spec!r}: choose auto, inception:PATH (pytorch-fid's weights file) or "
            "the path of a TorchScript feature network; no such file"
        )
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise ValueError(
            f"--features {spec}: not a TorchScript file ({type(e).__name__}); save your network "
            "with torch.jit.save(torch.jit.script(net), PATH)"
        ) from None
    return Features(path.stem, net, {"network": str(path)})
