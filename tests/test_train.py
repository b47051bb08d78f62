"""The training routine, runs, checkpoints (round trip, exact resume, bad files), bad input."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import checkpoint, data, guides, models
from pyro_vae import run as runs
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.kinds import build
from pyro_vae.runtime import resolve_device
from pyro_vae.train import ROW, Trainer

CPU = torch.device("cpu")
SMALL = ModelConfig(z_dim=4, hidden=(32,))


@pytest.fixture
def small_config(tiny_mnist_dir) -> TrainConfig:
    return TrainConfig(
        dataset="mnist",
        data_dir=str(tiny_mnist_dir),
        train_size=256,
        test_size=64,
        epochs=2,
        batch_size=32,
        ll_samples=8,
        lr=3e-3,
    )


def blobs(n: int = 256, d: int = 12) -> torch.Tensor:
    return torch.bernoulli(torch.rand(n, 1).expand(n, d).clone())


@pytest.mark.parametrize(
    "elbo, particles",
    [
        ("trace", 1),
        ("meanfield", 1),
        ("trace", 3),
        ("jit-trace", 1),
        ("jit-meanfield", 1),
        ("iwae", 5),
    ],
)
def test_trainer_improves_the_elbo(elbo, particles):
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    config = TrainConfig(batch_size=32, lr=1e-2, elbo=elbo, num_particles=particles)
    trainer = Trainer(model, guide, config, CPU)
    x = blobs()
    history = trainer.fit(x, epochs=6, test=x[:64], progress=False)
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["step"] == 6 * 8
    assert all(r["train_elbo"] < 0 and r["test_elbo"] < 0 for r in history)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 1


def test_trainer_uses_one_fused_adam_over_every_parameter():
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    trainer = Trainer(model, guide, TrainConfig(), CPU)
    assert len(trainer.optimizer.param_groups) == 1
    assert trainer.optimizer.param_groups[0]["fused"] is True
    owned = {id(p) for p in [*model.parameters(), *guide.parameters()]}
    assert {id(p) for p in trainer.optimizer.param_groups[0]["params"]} == owned


def test_hooks_see_every_step_and_epoch():
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    trainer = Trainer(model, guide, TrainConfig(batch_size=50), CPU)

    class Count:
        steps, rows = 0, []

        def on_step(self, t):
            self.steps += 1

        def on_epoch(self, t, row):
            self.rows.append(row)

    hook = Count()
    trainer.fit(blobs(120), epochs=2, hooks=[hook], progress=False)
    assert hook.steps == 6 and [r["epoch"] for r in hook.rows] == [1, 2]


def test_adam_betas_reach_the_optimizer():
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    config = TrainConfig(adam_betas=[0.95, 0.999])  # type: ignore[arg-type]  # as JSON gives
    assert config.adam_betas == (0.95, 0.999)
    trainer = Trainer(model, guide, config, CPU)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.95, 0.999)
    with pytest.raises(ValueError, match=r"adam_betas must lie in \[0, 1\)"):
        TrainConfig(adam_betas=(1.0, 0.999))


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_loss_is_a_clear_error():
    def broken(out):
        return dist.Normal(out * math.nan, 1.0, validate_args=False).to_event(1)

    model = models.VAEModel(12, 2, (16,), likelihood=broken)
    trainer = Trainer(model, guides.NormalGuide(12, 2, (16,)), TrainConfig(batch_size=64), CPU)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 1 .*loss became nan.*--lr"):
        trainer.fit(torch.randn(128, 12), epochs=1, progress=False)


def test_run_writes_its_folder(small_config, tmp_path, capsys):
    _, result = runs.train(SMALL, small_config, tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "checkpoint.pt",
        "metrics.csv",
        "curves.png",
        "reconstructions.png",
        "prior_samples.png",
        "evaluation.json",
    } <= files
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert tuple(rows[0]) == ROW
    for r in rows:
        rec, kl, elbo = (float(r[k]) for k in ("test_reconstruction", "test_kl", "test_elbo"))
        assert kl > 0 and rec < 0 and abs(rec - kl - elbo) < 1e-3
    assert result["binarization"] == "dynamic" and result["importance_samples"] == 8
    # log p(x) estimate is at least the ELBO (up to noise) and both are negative
    assert result["elbo"] - 1.0 < result["log_likelihood"] < 0
    assert f"output folder: {tmp_path / 'run'}" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="--resume"):
        runs.train(SMALL, small_config, tmp_path / "run", progress=False)


def test_resume_continues_exactly(small_config, tmp_path):
    straight, _ = runs.train(SMALL, small_config, tmp_path / "a", progress=False)
    runs.train(SMALL, replace(small_config, epochs=1), tmp_path / "b", progress=False)
    resumed, _ = runs.train(SMALL, small_config, tmp_path / "b", resume=True, progress=False)
    a, b = straight.trainer.state_dict(), resumed.trainer.state_dict()
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for key, value in a["modules"].items():
        assert torch.equal(value, b["modules"][key]), key
    for pa, pb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a["history"]) == drop(b["history"])


def test_checkpoint_round_trip_restores_model_and_guide(small_config, tmp_path):
    run, _ = runs.train(SMALL, replace(small_config, epochs=1), tmp_path / "r", progress=False)
    loaded = runs.load(tmp_path / "r" / "checkpoint.pt", device="cpu")
    assert loaded.model_config == run.model_config
    x = data.as_input(loaded.data.test[:5])  # stored uint8 images -> float rows
    assert torch.equal(loaded.guide.posterior(x).mean, run.guide.posterior(x).mean)
    assert torch.equal(loaded.model.decoder(torch.ones(1, 4)), run.model.decoder(torch.ones(1, 4)))


def test_bad_checkpoints_give_one_line_errors(small_config, tmp_path):
    runs.train(SMALL, replace(small_config, epochs=1), tmp_path / "r", progress=False)
    good = tmp_path / "r" / "checkpoint.pt"
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": checkpoint.FORMAT, "x": data.Dataset}, code)  # pickled class: refused
    for path, match in [
        (tmp_path / "missing.pt", "no checkpoint at"),
        (cut, "not a readable checkpoint.*truncated or corrupt"),
        (foreign, "not a 'pyro-vae checkpoint v1' file"),
        (code, "refused to load.*pickled objects"),
    ]:
        with pytest.raises(checkpoint.CheckpointError, match=match) as err:
            runs.load(path)
        assert "\n" not in str(err.value)
    saved = checkpoint.load(good)
    other = build(ModelConfig(z_dim=4, hidden=(64,)))
    trainer = Trainer(*other, small_config, CPU)
    with pytest.raises(checkpoint.CheckpointError, match="different architecture.*shape"):
        trainer.load_state_dict(saved["trainer"], str(good))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "c.pt", {"x": torch.ones(2)})
    before = path.read_bytes()

    def fail(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"x": torch.zeros(2)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_binarization_choice_and_refusal(small_config):
    run = runs.build(SMALL, replace(small_config, binarize="auto"))
    assert run.binarize == "dynamic" and not run.data.is_binary
    grey = runs.build(replace(SMALL, likelihood="cbernoulli"), small_config)
    assert grey.binarize == "none"
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs 0/1 data.*cbernoulli"):
        runs.build(SMALL, replace(small_config, binarize="none"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="sees no CUDA device; use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_meanfield_compiles_once():
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    trainer = Trainer(model, guide, TrainConfig(batch_size=32, elbo="jit-meanfield"), CPU)
    trainer.fit(blobs(64), epochs=1, progress=False)
    compiled = trainer.elbo._differentiable_loss
    trainer.fit(blobs(64), epochs=3, progress=False)
    assert trainer.elbo._differentiable_loss is compiled


def test_beta_scales_only_the_kl_term():
    import pyro
    from pyro.infer import Trace_ELBO

    from pyro_vae.objectives import ScaleLatents

    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    x = blobs(32)

    def loss(beta):
        pyro.set_rng_seed(3)
        with ScaleLatents(beta):
            return Trace_ELBO().differentiable_loss(model, guide, x).item()

    pyro.set_rng_seed(3)
    z = guide.posterior(x).rsample()
    reconstruction = model.decode(z).log_prob(x).sum().item()
    kl = (guide.posterior(x).log_prob(z) - model.prior().log_prob(z)).sum().item()
    assert loss(0.0) == pytest.approx(-reconstruction, rel=1e-5)
    assert loss(1.0) == pytest.approx(-reconstruction + kl, rel=1e-5)
    assert loss(4.0) == pytest.approx(-reconstruction + 4 * kl, rel=1e-5)


def test_kl_warmup_ramps_beta_per_epoch():
    model, guide = models.VAEModel(12, 2, (16,)), guides.NormalGuide(12, 2, (16,))
    config = TrainConfig(batch_size=64, beta=2.0, warmup_epochs=4)
    history = Trainer(model, guide, config, CPU).fit(blobs(64), 6, progress=False)
    assert [r["beta"] for r in history] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_tensorboard_events_hold_the_epochs_and_the_figures(small_config, tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    runs.train(SMALL, replace(small_config, tensorboard=True), tmp_path / "tb", progress=False)
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events, "no event file in the run folder"
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    test_elbo = acc.Scalars("test/elbo")
    assert [e.step for e in test_elbo] == [1, 2]
    rows = list(csv.DictReader((tmp_path / "tb" / "metrics.csv").read_text().splitlines()))
    assert test_elbo[-1].value == pytest.approx(float(rows[-1]["test_elbo"]), rel=1e-5)
    assert {"reconstructions", "prior_samples", "curves"} <= set(acc.Tags()["images"])
    assert acc.Scalars("final/log_likelihood")[0].step == 2


def test_colour_folder_trains_a_conv_vae_with_bits_per_dim(tmp_path, monkeypatch):
    """A user's own colour images end to end: folder -> conv VAE -> 8-bit likelihood ->
    bits/dim in evaluation.json, colour figures."""
    from PIL import Image

    from pyro_vae.data import cache

    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(40):
            pixels = rng.integers(0, 60, (12, 12, 3), dtype=np.uint8)
            pixels[..., 2 * c] += 180
            (tmp_path / "pics" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / "pics" / str(c) / f"{i}.png")
    _, result = runs.train(
        ModelConfig(z_dim=4, hidden=(32,), net="conv", likelihood="logistic256"),
        TrainConfig(dataset=f"folder:{tmp_path / 'pics'}", epochs=2, batch_size=16, ll_samples=5),
        tmp_path / "run",
        progress=False,
    )
    assert result["binarization"] == "none" and tuple(result["model_config"]["image_shape"]) == (
        3,
        12,
        12,
    )
    expected = -result["log_likelihood"] / (3 * 12 * 12) / math.log(2)
    assert result["bits_per_dim"] == pytest.approx(expected)
    assert 0 < result["bits_per_dim"] < 12
    with Image.open(tmp_path / "run" / "reconstructions.png") as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 60).any()  # colour, not grey
    again = runs.load(tmp_path / "run" / "checkpoint.pt")
    assert again.data.image_shape == (3, 12, 12) and len(again.data.test) == 8


def test_streaming_from_a_memory_mapped_file_matches_the_in_memory_path(
    small_config, tmp_path, monkeypatch, capsys
):
    from pyro_vae.data import cache

    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / "cache"))
    config = replace(small_config, ll_samples=0)
    in_memory, _ = runs.train(SMALL, config, tmp_path / "a", progress=False)
    streamed, _ = runs.train(
        SMALL, replace(config, data_memory=0.0), tmp_path / "b", progress=False
    )
    assert "batches stream from a memory-mapped file" in capsys.readouterr().err
    assert list((tmp_path / "cache").glob("stream-*/train.npy"))
    # the training images are the memory-mapped file itself, not a copy in RAM or on the device
    assert str(_mapped_file(streamed.data.train)).endswith("train.npy")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(in_memory.trainer.history) == drop(streamed.trainer.history)
    a, b = in_memory.trainer.state_dict(), streamed.trainer.state_dict()
    for key, value in a["modules"].items():
        assert torch.equal(value, b["modules"][key]), key
    with pytest.raises(ValueError, match="data_memory must be a finite number of GiB >= 0"):
        TrainConfig(data_memory=-1)


def _mapped_file(t: torch.Tensor) -> str | None:
    """The file whose memory mapping holds tensor ``t`` (Linux's /proc/self/maps), if any."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc/self/maps here")
    address = t.data_ptr()
    for line in maps.read_text().splitlines():
        fields = line.split()
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= address < hi:
            return fields[5] if len(fields) > 5 else None
    return None


def test_the_row_columns_are_declared_once(small_config, tmp_path):
    run, _ = runs.train(SMALL, replace(small_config, epochs=1, ll_samples=0), tmp_path / "r")
    assert tuple(run.trainer.history[0]) == ROW  # no hook added columns to the vae's row
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",") == list(ROW)
