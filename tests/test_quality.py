"""The sample-quality metric: Fréchet distance against closed forms, precision / recall on
known point sets, sharpness, the feature networks and ``pyro-vae evaluate --quality``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import cli, data, quality
from pyro_vae.quality import features, metrics

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "16", "--ll-samples", "4", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache" / "images"))


def random_cov(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_one_dimensional_gaussians_is_the_closed_form():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    for m1, s1, m2, s2 in [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)]:
        fd = metrics.frechet_distance(
            torch.tensor([m1]), torch.tensor([[s1**2]]), torch.tensor([m2]), torch.tensor([[s2**2]])
        )
        assert fd == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-9, abs=1e-12)


def test_frechet_distance_of_commuting_covariances_is_the_closed_form():
    # diagonal covariances commute: tr((S1 S2)^1/2) = sum sqrt(s1_i s2_i)
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    fd = metrics.frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))
    expected = 5.0 + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum().item()
    assert fd == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_general_covariances_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    c1, c2 = random_cov(6, 0), random_cov(6, 1)
    mu1, mu2 = torch.zeros(6, dtype=torch.float64), torch.linspace(-1, 1, 6, dtype=torch.float64)
    cross = linalg.sqrtm(c1.numpy() @ c2.numpy()).real.trace()
    expected = (mu1 - mu2).square().sum().item() + c1.trace().item() + c2.trace().item()
    expected -= 2 * cross
    assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-8)
    assert metrics.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_feature_distance_of_samples_approaches_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    c = random_cov(3, 2)
    chol = torch.linalg.cholesky(c)
    real = torch.randn(40_000, 3, generator=gen, dtype=torch.float64) @ chol.T
    fake = 2 * torch.randn(40_000, 3, generator=gen, dtype=torch.float64) @ chol.T + 1
    # N(1, 4C) against N(0, C): |1|^2 * 3 + tr(C + 4C - 2 * 2C) = 3 + tr(C)
    expected = 3 + c.trace().item()
    assert metrics.feature_distance(real, fake) == pytest.approx(expected, rel=0.03)


def blobs(centres: list[tuple[float, float]], n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    parts = [torch.randn(n, 2, generator=gen) * 0.1 + torch.tensor(c) for c in centres]
    return torch.cat(parts)


def test_precision_and_recall_of_known_point_sets():
    real = blobs([(0, 0), (5, 5)], 200, 0)
    same = blobs([(0, 0), (5, 5)], 200, 1)
    precision, recall = metrics.precision_recall(real, same)
    assert precision > 0.95 and recall > 0.95
    far = blobs([(50, 50)], 400, 2)
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    # mode collapse: every sample is realistic, half of the data is never produced
    collapsed = blobs([(0, 0)], 400, 3)
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.03)
    # spread-out samples: they cover the data, but most of them lie off it
    spread = torch.randn(400, 2, generator=torch.Generator().manual_seed(4)) * 4 + 2.5
    precision, recall = metrics.precision_recall(real, spread)
    assert precision < 0.2 and recall > 0.9


def test_kth_neighbour_radii_skip_the_point_itself_and_refuse_too_few_points():
    points = torch.tensor([[0.0], [1.0], [3.0]])
    assert metrics.kth_neighbour_radii(points, 1).tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="k must be from 1 to 2"):
        metrics.kth_neighbour_radii(points, 3)


def test_sharpness_falls_with_blur_and_is_zero_for_flat_images():
    gen = torch.Generator().manual_seed(0)
    sharp = (torch.rand(8, 3, 32, 32, generator=gen) > 0.5).float()
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    assert metrics.sharpness(blurred) < 0.3 * metrics.sharpness(sharp)
    assert metrics.sharpness(torch.full((2, 1, 8, 8), 0.7)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        metrics.sharpness(torch.zeros(2, 64))


def squares(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images: a bright square whose corner is the class (0: top, 1: bottom)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, 1, size, size), generator=gen, dtype=torch.uint8)
    y = torch.arange(n) % 2
    for i in range(n):
        r = int(y[i]) * (size // 2)
        x[i, 0, r : r + size // 2, : size // 2] = 250
    return x, y


def square_data(n: int = 200, attributes: bool = False) -> data.Dataset:
    x, y = squares(n)
    xt, yt = squares(60, seed=1)
    extra: dict = {"train_labels": y, "test_labels": yt}
    if attributes:  # two binary attributes: the class, and a constant
        a = torch.stack([y.bool(), torch.ones(n, dtype=torch.bool)], 1)
        at = torch.stack([yt.bool(), torch.ones(60, dtype=torch.bool)], 1)
        extra = {
            "attribute_names": ("Bottom", "Always"),
            "train_attributes": a,
            "test_attributes": at,
        }
    return data.Dataset("squares", x, xt, (1, 8, 8), "made up", **extra)


def test_feature_network_learns_the_classes_and_is_cached(tmp_path, capsys):
    ds = square_data()
    net, info, path = features.trained(ds, epochs=3, progress=False)
    assert info["task"] == "classes" and info["test_accuracy"] == 1.0
    assert info["majority_accuracy"] == pytest.approx(0.5)
    assert path.is_file() and path.parent.name == "features"
    again, info2, path2 = features.trained(ds, epochs=3, progress=False)
    assert path2 == path and info2 == info
    assert "training" not in capsys.readouterr().err.split("\n", 1)[1]  # read, not trained
    x = data.as_input(ds.test).reshape(-1, 1, 8, 8)
    assert torch.equal(net.features(x), again.features(x))
    assert net.features(x).shape == (60, features.WIDTH)
    # a damaged cache entry is trained again, with a note
    path.write_bytes(b"not a network")
    capsys.readouterr()
    features.trained(ds, epochs=3, progress=False)
    assert "is not a usable feature network" in capsys.readouterr().err


def test_feature_network_of_attributes_and_of_unlabelled_data():
    ds = square_data(attributes=True)
    _, info = features.train(ds, epochs=3, progress=False)
    assert info["task"] == "attributes" and info["test_accuracy"] == 1.0
    assert info["majority_accuracy"] == pytest.approx(0.75)
    bare = data.Dataset("bare", ds.train, ds.test, (1, 8, 8), "made up")
    with pytest.raises(ValueError, match="no labels or attributes.*--features inception:PATH"):
        features.resolve("auto", bare)


def test_a_second_auto_network_from_another_seed(tmp_path):
    """auto:SEED: an independent judge of a model trained on the seed-0 network's features."""
    ds = square_data()
    first, second = features.resolve("auto", ds), features.resolve("auto:1", ds)
    assert first.name == "squares-classes" and second.name == "squares-classes-seed1"
    assert first.info["seed"] == 0 and second.info["seed"] == 1
    assert first.info["network"] != second.info["network"]
    x = data.as_input(ds.test).reshape(-1, 1, 8, 8)
    assert not torch.allclose(first(x), second(x))
    assert torch.equal(features.resolve("auto:0", ds)(x), first(x))
    for bad in ("auto:x", "auto:-1"):
        with pytest.raises(ValueError, match="auto:SEED takes a whole number >= 0"):
            features.resolve(bad, ds)


def test_features_by_torchscript_file_and_bad_specs(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    path = tmp_path / "f.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    feats = features.resolve(str(path), square_data())
    assert feats.name == "f" and feats(torch.rand(7, 1, 8, 8)).shape == (7, 5)
    with pytest.raises(ValueError, match="choose auto, inception:PATH"):
        features.resolve(str(tmp_path / "missing.pt"), square_data())
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        features.resolve(str(tmp_path / "junk.pt"), square_data())


def write_folder(root: Path, n: int = 40, size: int = 8) -> Path:
    x, y = squares(n, size)
    for i in range(n):
        (root / f"c{int(y[i])}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0].numpy()).save(root / f"c{int(y[i])}" / f"{i}.png")
    return root


def test_evaluate_quality_scores_prior_samples_and_reconstructions(tmp_path, capsys):
    images = write_folder(tmp_path / "imgs", n=80)
    run = tmp_path / "run"
    argv = ["train", "--dataset", f"folder:{images}", "--likelihood", "cbernoulli", *TINY]
    assert cli.main([*argv, "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["features", "--dataset", f"folder:{images}", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "feature network of imgs (classes): test accuracy" in out
    js = tmp_path / "q.json"
    argv = ["evaluate", str(run / "checkpoint.pt"), "--samples", "0", "--quality"]
    assert cli.main([*argv, "--quality-samples", "8", "--json", str(js)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("FD-imgs-classes, n = 8: prior ")
    result = json.loads(js.read_text())["quality"]
    assert result["metric"] == "FD-imgs-classes" and result["n"] == 8
    for what in ("prior", "reconstructions"):
        r = result[what]
        assert r["fd"] >= 0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert math.isfinite(r["sharpness_ratio"]) and r["sharpness_ratio"] > 0
    assert result["feature_network"]["task"] == "classes"
    assert result["data_sharpness"] > 0


def test_quality_counts_are_checked(tmp_path, capsys):
    for n, match in (("3", "from 4 to 100000"), ("100001", "from 4 to 100000")):
        capsys.readouterr()
        assert cli.main(["evaluate", "nothing.pt", "--quality-samples", n]) == 1
        assert match in capsys.readouterr().err


def test_score_takes_the_python_api_run(tmp_path):
    images = write_folder(tmp_path / "imgs", n=40)
    argv = ["train", "--dataset", f"folder:{images}", *TINY, "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    from pyro_vae import api

    run = api.load(tmp_path / "r" / "checkpoint.pt")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    result = quality.score(run, quality.Features("lin", net), n=6)
    assert result["metric"] == "FD-lin" and result["n"] == 4  # all of the 4 test images
    assert "feature_network" not in result
    assert np.isfinite(result["prior"]["fd"])
    # the run binarizes its test images (bernoulli): scored against the grey levels instead
    config = run.train_config
    grey = data.load(config.dataset).subset(config.train_size, config.test_size)
    assert run.data.test.unique().numel() <= 2 < grey.test.unique().numel()
    real, _ = quality.real_images(run, 6, dataset=grey)
    assert torch.equal(real, data.as_input(grey.test).reshape(-1, 1, 8, 8)[real_order(run, 6)])
    on_grey = quality.score(run, quality.Features("lin", net), n=6, dataset=grey)
    assert on_grey["data_sharpness"] < result["data_sharpness"]


def real_order(run, n: int) -> torch.Tensor:
    """The indices real_images draws (seed 0)."""
    count = min(n, len(run.data.test))
    return torch.randperm(len(run.data.test), generator=torch.Generator().manual_seed(0))[:count]
