"""The Inception network of FID (Heusel et al. 2017), written here without torchvision.

``FIDInception`` is layer for layer pytorch-fid's ``InceptionV3(output_blocks=[3])`` with
``use_fid_inception=True``: torchvision's ``Inception3`` stem and ``Mixed_*`` blocks, with
pytorch-fid's patches that reproduce the TensorFlow graph of 2015 (average pools that do not count
the zero padding in ``Mixed_5b``-``5d``, ``6b``-``6e`` and ``7b``; a max pool in ``Mixed_7c``'s
pool branch). An image is resized to 299 x 299 (bilinear), scaled from [0, 1] to [-1, 1], and
its feature is the 2048-d average pool before the classifier.

These are the standard FID features **only** with pytorch-fid's weights file
``pt_inception-2015-12-05-6726825d.pth`` (``FID_WEIGHTS_URL``), loaded by
``load_fid_inception(path)``; its state dict is that of torchvision's ``Inception3`` with 1008
classes and no auxiliary head, and this module has exactly those names and shapes (the 1008-way
``fc`` is kept so that the file loads strictly, though the features stop before it). This
machine cannot download it: fetch it where the network is reachable, e.g.
``curl -LO <FID_WEIGHTS_URL>``, copy it here and pass its path. ``FIDInception()`` at random
initialisation is for testing the pipeline only; a distance in its features is no FID.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
FEATURE_DIM = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias -> BatchNorm (eps 1e-3, TensorFlow's) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, **conv: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **conv)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's average pool leaves the zero padding out of the mean (pytorch-fid's patch)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35 x 35 block (``Mixed_5b``-``5d``): 1x1, 5x5, double 3x3 and pool branches."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``), unpatched."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, pool], 1)


class InceptionC(nn.Module):
    """17 x 17 block (``Mixed_6b``-``6e``): factorised 7x7 branches of width ``c7``."""

    def __init__(self, c_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = x
        for conv in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            b7d = conv(b7d)
        return torch.cat([self.branch1x1(x), b7, b7d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``), unpatched."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 x 8 block (``Mixed_7b``, ``7c``) with split 1x3 / 3x1 outputs.

    ``max_pool`` selects pytorch-fid's ``FIDInceptionE_2`` (``Mixed_7c``), whose pool branch is
    a max pool in the TensorFlow graph; otherwise it is ``FIDInceptionE_1``'s padding-excluding
    average pool.
    """

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        if self.max_pool:
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pool = _avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, b3d, self.branch_pool(pool)], 1)


class FIDInception(nn.Module):
    """pytorch-fid's FID Inception-v3, from images in [0, 1] to 2048-d pool features.

    ``forward(x)``: ``x`` of shape (n, C, H, W), C = 1 (grey, repeated to three channels) or 3,
    values in [0, 1] -> bilinear resize to 299 x 299 (``align_corners=False``) -> ``2 x - 1`` ->
    ``Conv2d_1a_3x3`` ... ``Mixed_7c`` -> global average pool -> (n, 2048).

    The module is frozen: its parameters need no gradient and it stays in eval mode (BatchNorm
    uses the stored statistics) even when a parent calls ``.train()``. Gradients with respect
    to the input still flow. Built directly it is randomly initialised (He-normal convolutions,
    so that features keep a usable scale through the 94 layers): for tests only; use
    ``load_fid_inception`` for the real features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        # ImageNet's 1008-way classifier of the TF graph: unused, kept so the weights load strictly
        self.fc = nn.Linear(FEATURE_DIM, 1008)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInception:
        """Stay in eval mode whatever ``mode`` is: a fixed feature network."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"FIDInception takes images of shape (n, 1 or 3, H, W), got {tuple(x.shape)}: "
                "pass a batch of grey or RGB images with values in [0, 1]"
            )
        x = x.to(self.fc.weight.dtype).expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _refuse(path: Path, problem: str) -> ValueError:
    return ValueError(
        f"{path}: {problem}; download pytorch-fid's {FID_WEIGHTS_FILE} from {FID_WEIGHTS_URL} "
        "(this machine cannot download, so fetch it on one that can, copy it here) and pass "
        "its path"
    )


def load_fid_inception(path: str | Path) -> FIDInception:
    """``FIDInception`` with pytorch-fid's weights read from ``path`` (frozen, eval mode, CPU).

    The file must be the state dict of ``FID_WEIGHTS_FILE``, matched name for name and shape
    for shape; BatchNorm's ``num_batches_tracked`` counters (unused in eval mode) may be absent,
    as in files written before PyTorch 0.4.1. Anything else is refused in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, an image, a pickled model object: all one answer
        raise _refuse(path, f"not a PyTorch state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise _refuse(path, f"holds a {type(state).__name__}, not a state dict of tensors")
    model = FIDInception()
    expected = model.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value.clone())
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise _refuse(
            path,
            f"its state dict does not match the FID Inception ({len(missing)} keys missing, "
            f"{len(unexpected)} unexpected, first {first})",
        )
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise _refuse(
                path,
                f"{key} has shape {tuple(state[key].shape)}, the FID Inception's is "
                f"{tuple(value.shape)}",
            )
    model.load_state_dict(state, strict=True)
    return model
