"""Model kinds and registries as first-class pieces: a kind added from inside a test, a user's
own prior and likelihood by import path, one-way imports, no branching on kind names."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import data, kinds
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.models import VAEModel
from pyro_vae.registry import Registry, construct
from tests.conftest import REPO

PACKAGE = REPO / "pyro_vae"


def tiny_dataset(n: int = 256) -> data.Dataset:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n + 64, 16, generator=g) > 0.5).float()
    labels = torch.randint(0, 3, (n + 64,), generator=g)
    return data.Dataset("toy", x[:n], x[n:], (4, 4), "made up", labels[:n], labels[n:])


class ToyGuide(pyro.nn.PyroModule):
    """q(z | x) = N(W x, 1): a linear amortized guide."""

    def __init__(self, x_dim: int, z_dim: int) -> None:
        super().__init__()
        self.net = torch.nn.Linear(x_dim, z_dim)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(self.net(x), 1.0).to_event(1))

    def point(self, x):
        return self.net(x)


class ToyKind(kinds.ModelKind):
    """A new kind, declared entirely here: a linear VAE with its own guide."""

    name = "toy"
    guides = Registry("toy guide")
    guides.register("linear", ToyGuide)
    default_guide = "linear"

    def build(self, config):
        model = VAEModel(config.x_dim, config.z_dim, (), likelihood=self.likelihood(config))
        return model, ToyGuide(config.x_dim, config.z_dim)


def test_a_kind_added_in_a_test_trains_evaluates_and_restores(tmp_path):
    name = f"{__name__}:ToyKind"  # by import path: nothing registered anywhere else
    config = ModelConfig(model=name, z_dim=2)
    assert config.guide == "linear"
    run, result = runs.train(
        config,
        TrainConfig(epochs=2, ll_samples=10, batch_size=64),
        tmp_path / "toy",
        dataset=tiny_dataset(),
        progress=False,
    )
    assert math_finite(result["log_likelihood"]) and result["active_units"]["z"] <= 2
    for f in ("checkpoint.pt", "metrics.csv", "reconstructions.png", "prior_samples.png"):
        assert (tmp_path / "toy" / f).stat().st_size > 0
    again = runs.load(tmp_path / "toy" / "checkpoint.pt")  # its data ("toy") are not loadable
    assert again.test_data is None and isinstance(again.guide, ToyGuide)
    for a, b in zip(run.guide.parameters(), again.guide.parameters(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())


def math_finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def test_kinds_register_where_defined_and_one_error_for_unknown_names():
    assert {"vae", "cvae", "m2", "hvae"} <= set(kinds.KINDS)
    with pytest.raises(ValueError, match=r"unknown model kind 'nope'; choose one of"):
        ModelConfig(model="nope")
    with pytest.raises(ValueError, match=r"unknown guide of the hierarchical VAE 'iaf'"):
        ModelConfig(model="hvae", guide="iaf")
    with pytest.raises(ValueError, match=r"cannot import prior 'no_such_module:X'"):
        ModelConfig(prior="no_such_module:X")
    with pytest.raises(ValueError, match=r"unknown ELBO 'x'"):
        TrainConfig(elbo="x")
    sources = [p.read_text() for p in PACKAGE.rglob("*.py")]
    assert sum(s.count("choose one of") for s in sources) == 1  # registry.unknown


def test_construct_passes_what_the_signature_names():
    def f(z_dim, components=1):
        return (z_dim, components)

    assert construct(f, z_dim=3, x_dim=9, components=2, guide=None) == (3, 2)


def test_nothing_outside_a_kind_branches_on_kind_names():
    for path in PACKAGE.rglob("*.py"):
        if "kinds" in path.parts:
            continue
        text = path.read_text()
        for needle in (
            '== "vae"',
            '== "cvae"',
            '== "m2"',
            '== "hvae"',
            '"classify")',
            "hasattr(run.guide",
        ):
            assert needle not in text, f"{path.name} has {needle}"


# modules by layer: a module may import only its own layer or lower ones
LAYERS = [
    {
        "registry",
        "runtime",
        "inputs",
        "nets",
        "likelihoods",
        "spherical",
        "priors",
        "guides",
        "models",
        "objectives",
        "bounds",
        "divergences",
        "critics",
        "hamiltonian",
        "samplers",
        "data",
        "checkpoint",
        "evaluate",
        "predictive",
        "latent",
        "plots",
        "kinds",
        "quality",
        "traced",
        "snapshot",
        "adversary",
        "dsprites",
        "disentanglement",
        "distributed",
    },
    {"config"},
    {"train", "options", "configfile"},
    {"runfolder", "figures", "applied", "loggers", "resume"},
    {"run", "api", "export"},
    {"cli", "cli_apply", "experiment", "__main__"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"pyro_vae.{module} is in no layer of this test")


def _is_module(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def _targets(parts: tuple[str, ...], node: ast.AST) -> list[str]:
    """The pyro_vae modules an import statement of module ``parts`` names."""
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = list(parts[: len(parts) - node.level])
        if node.module:
            return [".".join([*base, node.module])]
        names = [".".join([*base, a.name]) for a in node.names]
        return [n for n in names if _is_module(n)]  # not a name such as __version__
    if (node.module or "").startswith("pyro_vae."):
        return [node.module.removeprefix("pyro_vae.")]
    return []


def test_imports_run_one_way():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.parts == ("__init__",):
            continue
        own = _layer(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(rel.parts, node):
                assert _layer(target) <= own, f"{'.'.join(rel.parts)} imports {target}"
        assert "import experiments" not in path.read_text()


MY_PIECES = '''
import pyro.distributions as dist
import torch
from torch import nn


class MoG(nn.Module):
    """A mixture of K Gaussians with learned means (a user's prior)."""

    def __init__(self, z_dim, components=3):
        super().__init__()
        self.loc = nn.Parameter(torch.randn(components, z_dim))

    def forward(self):
        k = self.loc.shape[0]
        return dist.MixtureSameFamily(
            dist.Categorical(logits=torch.zeros(k, device=self.loc.device)),
            dist.Normal(self.loc, 1.0).to_event(1),
        )


class PixelLaplace(nn.Module):
    """Per-pixel Laplace with a learned scale (a user's likelihood)."""

    def __init__(self):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, out):
        return dist.Laplace(out, self.log_scale.exp()).to_event(1)


def load(data_dir=None):
    """A user's own data set (grey levels)."""
    from pyro_vae.data import Dataset

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 16, generator=g)
    return Dataset("mine", x[:256], x[256:], (4, 4), "my_pieces.load")
'''


def test_users_own_pieces_by_import_path_train_and_reload_in_a_new_process(tmp_path):
    (tmp_path / "my_pieces.py").write_text(textwrap.dedent(MY_PIECES))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}

    def cli(*args: str, pythonpath: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pyro_vae", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
            env=env if pythonpath else {**os.environ, "PYTHONPATH": str(REPO)},
        )

    out = tmp_path / "run"
    done = cli(
        "train", "--dataset", "my_pieces:load", "--prior", "my_pieces:MoG",
        "--likelihood", "my_pieces:PixelLaplace", "--z-dim", "2", "--hidden", "16",
        "--epochs", "2", "--ll-samples", "20", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "evaluation.json").read_text())["model_config"]
    assert saved["prior"] == "my_pieces:MoG" and saved["likelihood"] == "my_pieces:PixelLaplace"
    done = cli("evaluate", str(out / "checkpoint.pt"), "--samples", "10")
    assert done.returncode == 0 and "log p(x)" in done.stdout, done.stderr
    done = cli("sample", str(out / "checkpoint.pt"), "--n", "9", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert (out / "samples-n9-seed3.png").exists()
    done = cli("sample", str(out / "checkpoint.pt"), pythonpath=False)  # module not importable
    assert done.returncode == 1 and "cannot import" in done.stderr and "my_pieces" in done.stderr


def test_a_run_on_a_users_data_loads_without_them(tmp_path):
    runs.train(
        ModelConfig(z_dim=2, hidden=(8,)),
        TrainConfig(epochs=1, ll_samples=0),
        tmp_path / "r",
        dataset=tiny_dataset(),
        progress=False,
    )
    again = runs.load(tmp_path / "r" / "checkpoint.pt")
    assert again.test_data is None and again.data.image_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="unknown dataset 'toy'"):
        runs.load(tmp_path / "r" / "checkpoint.pt", dataset=True)


def test_every_config_field_is_a_cli_option_with_its_default():
    from dataclasses import fields

    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for cls in (ModelConfig, TrainConfig):
        for f in fields(cls):
            if f.metadata.get("cli", True):
                flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
                assert flag in text, flag
    assert "(default: 50)" in text and "(default: trace)" in text


def test_the_same_bad_value_gets_the_same_message_from_cli_and_python():
    with pytest.raises(ValueError) as python:
        TrainConfig(batch_size=0)
    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--batch-size", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == f"pyro-vae: error: {python.value}"


def test_registries_extend_through_entry_points(monkeypatch):
    from importlib import metadata

    class EP:
        name, group = "ep-prior", "pyro_vae.priors"

        def load(self):
            return lambda z_dim: dist.Normal(torch.zeros(z_dim), 2.0).to_event(1)

    real = metadata.entry_points
    monkeypatch.setattr(
        metadata,
        "entry_points",
        lambda **kw: [EP()] if kw.get("group") == "pyro_vae.priors" else real(**kw),
    )
    from pyro_vae.priors import PRIORS

    assert PRIORS.choose("ep-prior")(3).event_shape == (3,)
    model, _ = kinds.build(ModelConfig(x_dim=16, z_dim=3, hidden=(8,), prior="ep-prior"))
    assert model.prior().base_dist.scale.eq(2.0).all()


def test_hvae_commit_touches_few_places():
    """The kinds package holds each kind in one module; the CLI names none of them."""
    cli = (PACKAGE / "cli.py").read_text() + (PACKAGE / "options.py").read_text()
    for name in ("hvae", "ladder", "m2", "cvae", "classify"):
        assert name not in cli
    assert Path(kinds.hvae.__file__).parent.name == "kinds"
