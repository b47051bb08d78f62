"""The FID Inception network: pytorch-fid's names and shapes, loading, grey input, refusals.

The reference literals below were generated from pytorch-fid 0.3.0's ``fid_inception_v3()``
(torchvision 0.29's ``Inception3(num_classes=1008, aux_logits=False)`` with pytorch-fid's
``FIDInceptionA/C/E_1/E_2`` blocks), whose state dict is the layout of the weights file
``pt_inception-2015-12-05-6726825d.pth``. Features matched pytorch-fid's ``InceptionV3([3])``
bit for bit on shared random weights (grey and RGB inputs of other sizes than 299).
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from pyro_vae.quality.inception import (
    FEATURE_DIM,
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_URL,
    FIDInception,
    load_fid_inception,
)

# sha256 of "name (shape)" lines of fid_inception_v3().state_dict(), in order
REFERENCE_LAYOUT_SHA256 = "7151cff94593b8e836fb1f91b5ae5a52927bb5290e150458690d9d5ea0523e95"
REFERENCE_PARAMETERS = 23_850_960  # fc's 1008 x 2048 + 1008 included
REFERENCE_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Mixed_5b.branch1x1.bn.running_mean": (64,),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def model() -> FIDInception:
    torch.manual_seed(0)
    return FIDInception()


def _layout_digest(state: dict[str, torch.Tensor]) -> str:
    lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in state.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def test_names_and_shapes_are_those_of_pytorch_fids_weights(model):
    state = model.state_dict()
    assert len(state) == 566
    assert sum(k.endswith("num_batches_tracked") for k in state) == 94
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMETERS
    for key, shape in REFERENCE_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert _layout_digest(state) == REFERENCE_LAYOUT_SHA256
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.train().training  # frozen: BatchNorm keeps the stored statistics


def test_saved_weights_load_to_identical_features_and_grey_is_rgb(model, tmp_path):
    path = tmp_path / FID_WEIGHTS_FILE
    torch.save(model.state_dict(), path)
    loaded = load_fid_inception(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.manual_seed(1)
    grey = torch.rand(1, 1, 28, 28)
    x = torch.cat([grey.expand(-1, 3, -1, -1), torch.rand(1, 3, 28, 28)])
    with torch.no_grad():
        features = model(x)
        assert features.shape == (2, FEATURE_DIM)
        assert torch.equal(loaded(x), features)
        assert torch.equal(loaded(grey)[0], features[0])
    assert features.std() > 0.1  # random-init features keep a usable scale for pipeline tests
    assert not torch.allclose(features[0], features[1])


def test_files_without_batchnorm_counters_load(model, tmp_path):
    # files written before PyTorch 0.4.1 have no num_batches_tracked (unused in eval mode)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    loaded = load_fid_inception(tmp_path / "old.pth").state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in old.items())


def _refused(path, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        load_fid_inception(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and FID_WEIGHTS_URL in message


def test_wrong_files_are_refused_in_one_line(model, tmp_path):
    _refused(tmp_path / "absent.pth", "no such file")
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _refused(png, "not a PyTorch state dict")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    _refused(tmp_path / "tensor.pth", "holds a Tensor, not a state dict")

    state = model.state_dict()
    without = {k: v for k, v in state.items() if k != "Mixed_6c.branch7x7_2.bn.running_var"}
    torch.save(without, tmp_path / "missing.pth")
    _refused(tmp_path / "missing.pth", r"1 keys missing.*Mixed_6c\.branch7x7_2\.bn\.running_var")
    # torchvision's ImageNet Inception has an auxiliary head and 1000 classes
    aux = {**state, "AuxLogits.fc.bias": torch.zeros(1000)}
    torch.save(aux, tmp_path / "aux.pth")
    _refused(tmp_path / "aux.pth", r"0 keys missing, 1 unexpected, first unexpected AuxLogits")
    imagenet = {**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    torch.save(imagenet, tmp_path / "imagenet.pth")
    _refused(tmp_path / "imagenet.pth", r"fc\.weight has shape \(1000, 2048\)")
