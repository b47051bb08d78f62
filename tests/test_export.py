"""Exporting a run's encoder and decoder (``pyro_vae.export``): the files load with
``torch.jit.load`` in a process where Pyro and pyro-vae cannot be imported, and reproduce the
library's point summary and decoder mean for every kind; the refusals are one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pyro_vae import data, export, latent
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.runtime import inference

N = 7  # data per check: neither the traced batch size nor the one export checks itself on
TINY = {"z_dim": 2, "hidden": (16,)}

# name: (model config, whether on MNIST (else on a made-up colour array))
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "iaf-logistic-mixture": ({"guide": "iaf", "likelihood": "logistic-mixture"}, True),
    "fullcov-cbernoulli-conv": (
        {"guide": "fullcov", "likelihood": "cbernoulli", "net": "conv"},
        True,
    ),
    "delta-logistic256-colour-conv": (
        {"guide": "delta", "prior": "flat", "likelihood": "logistic256", "net": "conv"},
        False,
    ),
    "cvae": ({"model": "cvae"}, True),
    "m2": ({"model": "m2"}, True),
    "hvae-ladder": (
        {"model": "hvae", "guide": "ladder", "z_dim": 3, "z1_dim": 3, "top_hidden": (8,)},
        True,
    ),
}

CHILD = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyro", "pyro_vae"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocked())
for name in ("pyro", "pyro_vae"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} could be imported")

import torch

jobs = torch.load(sys.argv[1])
results = []
for job in jobs:
    encoder = torch.jit.load(job["folder"] + "/encoder.pt")
    decoder = torch.jit.load(job["folder"] + "/decoder.pt")
    codes = encoder(*job["encoder"])
    floats = encoder(job["encoder"][0].float() / 255, *job["encoder"][1:])
    as_list = lambda out: [out] if isinstance(out, torch.Tensor) else list(out)
    results.append(
        {"codes": as_list(codes), "floats": as_list(floats), "mean": decoder(*job["decoder"])}
    )
torch.save(results, sys.argv[2])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyro", "pyro_vae"))
if loaded:
    raise SystemExit(f"loading the exports imported {loaded}")
"""


def colour_array(folder: Path) -> str:
    """A made-up .npz of 8 x 8 colour images (N, H, W, C), uint8."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    path = folder / "colour.npz"
    np.savez(path, x_train=images[:48], x_test=images[48:])
    return f"array:{path}"


def reference(run: Any, folder: Path, x: torch.Tensor) -> dict[str, Any]:
    """What the library computes for stored images ``x``: the point summary (each site) and
    E[x | z] at the code the decoder reads, and the inputs each exported module takes."""
    k = run.model_config.num_classes
    labels = data.one_hot(torch.arange(len(x)) % k, k)
    sheet = json.loads((folder / "export.json").read_text())
    takes_y = [len(sheet[part]["inputs"]) == 2 for part in ("encoder", "decoder")]
    rows = data.as_input(x)
    with inference(run.model, run.guide):
        point = run.guide.point(rows, labels) if takes_y[0] else run.guide.point(rows)
        point = point if isinstance(point, dict) else {"z": point}
        z = point[sheet["decoder"]["inputs"][0]["name"]]
        mean = run.model.decode(z, labels).mean if takes_y[1] else latent.decode(run.model, z)
    return {
        "sheet": sheet,
        "point": point,
        "mean": mean.reshape(x.shape),
        "job": {
            "folder": str(folder),
            "encoder": [x, labels] if takes_y[0] else [x],
            "decoder": [z, labels] if takes_y[1] else [z],
        },
    }


@pytest.fixture(scope="module")
def mnist() -> data.Dataset:
    return data.load("mnist").subset(200, 50)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mnist) -> dict[str, dict[str, Any]]:
    """Every case exported, and the outputs of its files as loaded in a clean process."""
    tmp = tmp_path_factory.mktemp("export")
    x = mnist.test[:N]
    # a trained run, exported from its checkpoint, and the run as restored from it
    train = TrainConfig(epochs=1, ll_samples=0, device="cpu")
    runs.train(ModelConfig(**TINY), train, tmp / "trained", progress=False, dataset=mnist)
    export.export_checkpoint(tmp / "trained" / "checkpoint.pt", tmp / "trained" / "export")
    restored = runs.load(tmp / "trained" / "checkpoint.pt", device="cpu", dataset=False)
    cases = {"trained": reference(restored, tmp / "trained" / "export", x)}
    # built, untrained runs of the other kinds, guides and likelihoods
    for name, (config, on_mnist) in CASES.items():
        train = TrainConfig(labels=10, device="cpu")
        if not on_mnist:
            train = replace(train, dataset=colour_array(tmp))
        run = runs.build(ModelConfig(**{**TINY, **config}), train, mnist if on_mnist else None)
        assert export.export(run, tmp / name) == [
            tmp / name / f for f in ("encoder.pt", "decoder.pt", "export.json")
        ]
        cases[name] = reference(run, tmp / name, run.data.test[:N].cpu())
    torch.save([case["job"] for case in cases.values()], tmp / "jobs.pt")
    code = textwrap.dedent(CHILD)
    child = subprocess.run(
        [sys.executable, "-I", "-c", code, str(tmp / "jobs.pt"), str(tmp / "out.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    for case, result in zip(cases.values(), torch.load(tmp / "out.pt"), strict=True):
        case["result"] = result
    return cases


@pytest.mark.parametrize("name", ["trained", *CASES])
def test_exported_modules_reproduce_the_library_without_pyro(exported, name):
    case = exported[name]
    result, point = case["result"], case["point"]
    sites = [o["name"] for o in case["sheet"]["encoder"]["outputs"]]
    assert sites == list(point)
    for got, floats, site in zip(result["codes"], result["floats"], sites, strict=True):
        torch.testing.assert_close(got, point[site], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(floats, got)  # uint8 0..255 and floats in [0, 1] agree
    torch.testing.assert_close(result["mean"], case["mean"], rtol=1e-4, atol=1e-5)
    c, h, w = case["sheet"]["image_shape"]
    assert result["mean"].shape == (N, c, h, w)


def test_the_sheet_says_what_each_kind_takes_and_returns(exported):
    def names(name: str, part: str, io: str) -> list[str]:
        return [i["name"] for i in exported[name]["sheet"][part][io]]

    sheet = exported["trained"]["sheet"]
    assert sheet["format"] == "torchscript" and sheet["image_shape"] == [1, 28, 28]
    assert sheet["encoder"]["inputs"][0]["shape"] == ["n", 1, 28, 28]
    assert sheet["encoder"]["outputs"] == [{"name": "z", "shape": ["n", 2]}]
    assert exported["delta-logistic256-colour-conv"]["sheet"]["image_shape"] == [3, 8, 8]
    assert names("cvae", "encoder", "inputs") == ["x", "y"]  # q(z | x, y)
    assert names("cvae", "decoder", "inputs") == ["z", "y"]
    assert names("m2", "encoder", "inputs") == ["x"]  # z at the most probable class
    assert names("m2", "decoder", "inputs") == ["z", "y"]
    assert names("hvae-ladder", "encoder", "outputs") == ["z1", "z2"]
    assert names("hvae-ladder", "decoder", "inputs") == ["z1"]  # the code p(x | z1) reads
    assert exported["cvae"]["sheet"]["num_classes"] == 10


def test_exported_modules_check_their_inputs(exported):
    folder = exported["cvae"]["job"]["folder"]
    encoder = torch.jit.load(f"{folder}/encoder.pt")
    decoder = torch.jit.load(f"{folder}/decoder.pt")
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(torch.jit.Error, match=r"x must be images of shape \(n, 1, 28, 28\)"):
        encoder(x.reshape(4, -1), torch.eye(10)[:4])
    with pytest.raises(torch.jit.Error, match=r"y must be one-hot labels of shape \(4, 10\)"):
        encoder(x, torch.eye(10)[:3])
    z = encoder(x, torch.eye(10)[:4])
    by_index = decoder(z, torch.arange(4))  # class indices are taken as well as one-hot rows
    torch.testing.assert_close(by_index, decoder(z, torch.eye(10)[:4]))
    with pytest.raises(torch.jit.Error, match=r"the codes must have shape \(n, 2\)"):
        decoder(torch.zeros(4, 3), torch.arange(4))


def test_refusals_are_one_line_and_write_nothing(mnist, tmp_path, monkeypatch):
    run = runs.build(ModelConfig(**TINY), TrainConfig(device="cpu"), mnist)
    with pytest.raises(ValueError, match="unknown export format 'tflite'; choose one of") as e:
        export.export(run, tmp_path / "a", format="tflite")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as where the package is not installed
    with pytest.raises(ValueError, match="--format onnx needs the onnx package: pip install onnx"):
        export.export(run, tmp_path / "a", format="onnx")
    assert "\n" not in str(e.value) and not (tmp_path / "a").exists()
    # a folder with someone else's encoder.pt is refused; an earlier export is replaced
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "encoder.pt").write_text("not ours")
    with pytest.raises(FileExistsError, match="holds encoder.pt but no export.json"):
        export.export(run, tmp_path / "b")
    assert (tmp_path / "b" / "encoder.pt").read_text() == "not ours"
    again = tmp_path / "c"
    export.export(run, again)
    (again / "notes.txt").write_text("kept")
    export.export(run, again)
    assert (again / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in again.iterdir()) == [
        "decoder.pt",
        "encoder.pt",
        "export.json",
        "notes.txt",
    ]  # no temporary files left


def test_onnx_export_matches_the_library(mnist, tmp_path):
    pytest.importorskip("onnx")
    run = runs.build(ModelConfig(**TINY), TrainConfig(device="cpu"), mnist)
    files = export.export(run, tmp_path, format="onnx")  # checked against the library inside
    assert [f.name for f in files] == ["encoder.onnx", "decoder.onnx", "export.json"]
    assert json.loads(files[-1].read_text())["encoder"]["file"] == "encoder.onnx"
