"""The dSprites-style generator: its factor grid and the rendered images' geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pyro_vae import data, dsprites


def test_the_factor_grid_is_dsprites():
    assert dsprites.FACTOR_NAMES == ("shape", "scale", "orientation", "position_x", "position_y")
    assert dsprites.SIZES == (3, 6, 40, 32, 32) and dsprites.N_IMAGES == 737_280
    f = dsprites.FACTORS
    assert f["scale"][0] == 0.5 and f["scale"][-1] == 1.0
    assert f["orientation"][0] == 0 and math.isclose(f["orientation"][-1], 2 * math.pi)
    assert all(v.dtype == torch.float64 for v in f.values())
    assert f["position_x"][0] == 0 and f["position_y"][-1] == 1
    # the data set's order: y-position fastest, shape slowest
    assert dsprites.image_index([[0, 0, 0, 0, 1]]).item() == 1
    assert dsprites.image_index([[1, 0, 0, 0, 0]]).item() == 6 * 40 * 32 * 32
    last = torch.tensor([[2, 5, 39, 31, 31]])
    assert dsprites.image_index(last).item() == dsprites.N_IMAGES - 1
    values = dsprites.factor_values(last)[0]
    assert values[0] == 3 and values[1] == 1 and values[3] == 1 and values[4] == 1


def _area(mask) -> float:
    return float(torch.as_tensor(mask).float().sum())


def _centroid(mask) -> tuple[float, float]:
    m = torch.as_tensor(mask).float().squeeze()
    rows, cols = torch.nonzero(m, as_tuple=True)
    return float(cols.float().mean()), float(rows.float().mean())


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_area_grows_with_the_square_of_scale(shape):
    areas = [_area(dsprites.render(shape, s, 0.3)) for s in dsprites.FACTORS["scale"].tolist()]
    assert all(a < b for a, b in itertools.pairwise(areas))
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.15)  # scale 1 / scale 0.5


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_the_centroid_follows_the_position(shape):
    x0, y0 = _centroid(dsprites.render(shape, 1.0, 0.0))
    for px, py in [(0.0, 0.0), (1.0, 0.0), (10 / 31, 25 / 31), (1.0, 1.0)]:  # grid positions
        x, y = _centroid(dsprites.render(shape, 1.0, 0.0, px, py))
        assert x - x0 == pytest.approx(31 * px, abs=1e-6)  # whole pixels: exactly
        assert y - y0 == pytest.approx(31 * py, abs=1e-6)
    x, y = _centroid(dsprites.render(shape, 1.0, 0.0, 0.3, 0.8))  # between grid positions
    assert x - x0 == pytest.approx(31 * 0.3, abs=0.5) and y - y0 == pytest.approx(31 * 0.8, abs=0.5)
    x, y = _centroid(dsprites.render(shape, 1.0, 0.0, 0.5, 0.5))
    assert abs(x - 32) < 3 and abs(y - 32) < 3  # near the middle of the image


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_rotation_changes_the_mask_not_its_area(shape):
    angles = dsprites.FACTORS["orientation"].tolist()
    masks = [dsprites.render(shape, 1.0, a) for a in angles]
    areas = torch.tensor([_area(m) for m in masks])
    # sampled at pixel centres, an outline gains or loses up to about half a pixel along its
    # length: for the 20-pixel square (perimeter 80, area 400) about ±10 %
    assert (areas.max() - areas.min()) / areas.mean() < 0.12
    assert areas.std() / areas.mean() < 0.04
    assert not torch.equal(masks[0], masks[5])  # 2π·5/39 turns any of the three
    assert torch.equal(masks[0], masks[-1])  # 0 and 2π: the grid holds both, as DeepMind's


def test_the_images_are_the_rendered_grid_and_inside_the_frame():
    g = torch.Generator().manual_seed(0)
    rows = torch.cat([dsprites.sample_factors(60, g), torch.tensor([[2, 5, 19, 31, 31]])])
    images = dsprites.images_for(rows)
    assert images.dtype == np.uint8 and images.shape == (61, 1, 64, 64)
    assert set(np.unique(images)) <= {0, 255}
    for row, image in zip(rows.tolist(), images, strict=True):
        values = dsprites.factor_values(torch.tensor(row)).tolist()
        expected = dsprites.render(row[0], values[1], values[2], values[3], values[4])
        assert torch.equal(torch.from_numpy(image[0] > 0), expected)
        m = expected
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def test_the_data_set_loads_from_the_cache_with_its_factors(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path))
    rows = torch.tensor([[0, 0, 0, 0, 0], [1, 2, 3, 4, 5], [2, 5, 39, 31, 31]])
    small = dsprites.images_for(rows)  # the cache is built by generate(): patched smaller here
    monkeypatch.setattr(dsprites, "generate", lambda: (small, rows.numpy()))
    monkeypatch.setattr(data.dsprites, "DSPRITES_TEST", 2)
    ds = data.load("dsprites")
    assert "not DeepMind's file" in ds.source and ds.factor_names == dsprites.FACTOR_NAMES
    assert ds.train.shape == (3, 1, 64, 64) and ds.test.shape == (2, 1, 64, 64)
    assert torch.equal(ds.train_factors, rows) and ds.is_binary
    again = data.load("dsprites")  # from the cache, memory-mapped
    assert torch.equal(again.train, ds.train)
    assert len(list(tmp_path.iterdir())) == 1


def test_deepminds_file_is_loaded_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(data.dsprites, "DEEPMIND_IMAGES", 2)  # DeepMind's file, shrunk
    rows = np.array([[0, 0, 1, 2, 3, 4], [0, 2, 5, 39, 31, 31]], dtype=np.int64)
    imgs = (dsprites.images_for(rows[:, 1:])[:, 0] > 0).astype(np.uint8)
    folder = tmp_path / "dsprites"
    folder.mkdir()
    np.savez(folder / dsprites.DEEPMIND_FILE, imgs=imgs, latents_classes=rows)
    ds = data.load_dsprites(tmp_path)
    assert "DeepMind" in ds.source and ds.train.max() == 255
    assert torch.equal(ds.train_factors, torch.from_numpy(rows[:, 1:]))
