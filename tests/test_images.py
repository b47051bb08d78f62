"""Your own images: folders (with and without classes, train/test), arrays, CelebA's layout,
the decoded cache, and one clear line for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import data
from pyro_vae.data import cache, imagefiles
from tests.conftest import needs_shared


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / "cache"))


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _colour(seed, h=12, w=10):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _grey(seed, h=12, w=10):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_flat_colour_folder_is_split_with_a_seed_and_unlabelled(tmp_path):
    folder = tmp_path / "pics"
    arrays = [_colour(i) for i in range(20)]
    for i, a in enumerate(arrays):
        _write(folder / f"{i:02d}.png", a)
    before = _files(folder)
    ds = data.load(f"folder:{folder}")
    assert ds.train.dtype == torch.uint8 and ds.image_shape == (3, 12, 10)
    assert (len(ds.train), len(ds.test)) == (18, 2) and ds.train_labels is None
    assert ds.is_8bit and ds.x_dim == 360
    # PNG is lossless: every stored image is one of the files, channels first
    stored = {bytes(a.transpose(2, 0, 1)) for a in arrays}
    assert all(bytes(x.numpy()) in stored for x in torch.cat([ds.train, ds.test]))
    again = data.load(f"folder:{folder}")
    assert torch.equal(ds.test, again.test)  # the same split each time
    assert _files(folder) == before  # nothing written into the user's folder


def test_class_folders_become_labels_and_train_test_folders_are_used(tmp_path):
    root = tmp_path / "animals"
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(("cat", "dog", "emu")):
            for i in range(n):
                _write(root / split / name / f"{i}.jpg", _colour(10 * c + i, 16, 16))
    ds = data.load(f"folder:{root}")
    assert (len(ds.train), len(ds.test)) == (18, 6)
    assert ds.class_names == ("cat", "dog", "emu")
    assert ds.train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert ds.test_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_grey_folder_image_size_crops_the_centre_and_resizes(tmp_path):
    folder = tmp_path / "grey"
    for i in range(4):
        _write(folder / "a" / f"{i}.png", _grey(i, 20, 30))
        _write(folder / "b" / f"{i}.png", _grey(10 + i, 40, 24))
    with pytest.raises(data.DataError, match=r"different sizes.*--image-size S"):
        data.load(f"folder:{folder}")
    ds = data.load(f"folder:{folder}", image_size=8)
    assert ds.image_shape == (1, 8, 8) and len(ds.train) + len(ds.test) == 8
    assert sorted(torch.cat([ds.train_labels, ds.test_labels]).tolist()) == [0] * 4 + [1] * 4
    # a uniform image stays uniform through crop and resize
    _write(folder / "b" / "flat.png", np.full((40, 24), 77, np.uint8))
    flat = imagefiles._open(folder / "b" / "flat.png", 8, 1.0)
    assert flat.shape == (1, 8, 8) and (flat == 77).all()


def test_mixed_grey_and_colour_become_colour_with_a_count(tmp_path, capsys):
    folder = tmp_path / "mixed"
    for i in range(3):
        _write(folder / f"c{i}.png", _colour(i))
    _write(folder / "g.png", _grey(9))
    ds = data.load(f"folder:{folder}")
    assert ds.image_shape == (3, 12, 10)
    assert "1 grey of 4 images converted to colour" in capsys.readouterr().err
    grey = imagefiles._open(folder / "g.png", None, 1.0)
    assert grey.shape == (1, 12, 10)


def test_bad_folders_get_one_line_naming_the_file_and_the_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match=r"empty holds nothing: put PNG or JPEG"):
        data.load(f"folder:{empty}")
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("hello")
    with pytest.raises(data.DataError, match=r"no image files \(first file: notes.txt\)"):
        data.load(f"folder:{texts}")
    broken = tmp_path / "broken"
    _write(broken / "ok.png", _colour(0))
    (broken / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(data.DataError, match=r"bad\.jpg could not be decoded.*replace or remove"):
        data.load(f"folder:{broken}")
    loose = tmp_path / "loose"
    _write(loose / "x.png", _colour(0))
    _write(loose / "cls" / "y.png", _colour(1))
    with pytest.raises(data.DataError, match="beside class folders"):
        data.load(f"folder:{loose}")
    with pytest.raises(data.DataError, match="is not a folder"):
        data.load(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(data.DataError, match="needs a path after the colon"):
        data.load("folder:")


def test_the_decoded_cache_is_used_and_follows_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "pics"
    for i in range(5):
        _write(folder / f"{i}.png", _colour(i))
    first = data.load(f"folder:{folder}")
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and (entries[0] / "images.npy").is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefiles, "decode", no_decoding)
    assert torch.equal(data.load(f"folder:{folder}").train, first.train)  # from the cache
    _write(folder / "5.png", _colour(5))  # the folder changed: decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        data.load(f"folder:{folder}")


def test_arrays_npy_and_npz_uint8_and_float_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", images)
    ds = data.load(f"array:{tmp_path / 'a.npy'}")
    assert ds.image_shape == (3, 8, 8) and (len(ds.train), len(ds.test)) == (27, 3)
    labels = np.arange(30) % 3
    np.savez(tmp_path / "b.npz", images=images.astype(np.float32) / 255, labels=labels)
    ds = data.load(f"array:{tmp_path / 'b.npz'}")
    assert ds.train.dtype == torch.uint8 and sorted(ds.test_labels.tolist()) == [0, 1, 2]
    grey = images[..., 0]
    np.savez(tmp_path / "c.npz", x_train=grey[:20], x_test=grey[20:], y_train=labels[:20])
    ds = data.load(f"array:{tmp_path / 'c.npz'}")
    assert ds.image_shape == (1, 8, 8) and len(ds.test) == 10 and ds.test_labels is None
    assert torch.equal(ds.test[:, 0], torch.from_numpy(grey[20:]))
    nchw = images.transpose(0, 3, 1, 2).copy()
    np.save(tmp_path / "d.npy", nchw)
    assert data.load(f"array:{tmp_path / 'd.npy'}").image_shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 5, 5), np.int64), r"dtype int64 are not supported: save uint8"),
        (np.full((4, 5, 5), 2.0, np.float32), r"float images must lie in \[0, 1\]"),
        (np.zeros((4, 5), np.uint8), r"shape \(4, 5\) is not images"),
        (np.zeros((4, 5, 5, 7), np.uint8), r"shape \(4, 5, 5, 7\) is not images"),
    ],
)
def test_bad_arrays_get_one_line(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(data.DataError, match=message):
        data.load(f"array:{tmp_path / 'x.npy'}")


def test_bad_array_labels_and_files(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 5, 5), np.uint8), labels=np.zeros(3))
    with pytest.raises(data.DataError, match=r"labels must be 4 integers"):
        data.load(f"array:{tmp_path / 'x.npz'}")
    (tmp_path / "y.npy").write_text("not numpy")
    with pytest.raises(data.DataError, match=r"y\.npy could not be read"):
        data.load(f"array:{tmp_path / 'y.npy'}")


def _celeba(root, n=12, names=("Blond_Hair", "Eyeglasses", "Smiling")):
    for i in range(1, n + 1):
        _write(root / "img_align_celeba" / f"{i:06d}.jpg", _colour(i, 22, 18))
    rows = [
        f"{i:06d}.jpg " + " ".join("1" if (i + k) % 3 == 0 else "-1" for k in range(len(names)))
        for i in range(1, n + 1)
    ]
    (root / "list_attr_celeba.txt").write_text(
        "\r\n".join([str(n), " ".join(names), *rows]) + "\r\n"
    )
    return root


def test_celeba_layout_gives_named_attributes(tmp_path):
    root = _celeba(tmp_path / "celeba")
    ds = data.load("celeba", tmp_path, image_size=8)
    assert ds.image_shape == (3, 8, 8) and ds.attribute_names == (
        "Blond_Hair",
        "Eyeglasses",
        "Smiling",
    )
    assert len(ds.train) + len(ds.test) == 12 and ds.train_attributes.dtype == torch.bool
    both = torch.cat([ds.train_attributes, ds.test_attributes])
    assert both[:, 0].sum() == 4  # rows i with i % 3 == 0
    assert data.attribute(ds, "Smiling").shape == (len(ds.test),)
    with pytest.raises(ValueError, match=r"unknown attribute 'Blond'; choose one of"):
        data.attribute(ds, "Blond")
    same = data.load(f"celeba:{root}", image_size=8)
    assert torch.equal(same.test, ds.test)
    # with CelebA's partition file, its test rows are the test set
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{i:06d}.jpg {2 if i > 9 else 0}" for i in range(1, 13))
    )
    parted = data.load(f"celeba:{root}", image_size=8)
    assert (len(parted.train), len(parted.test)) == (9, 3)


def test_celeba_bad_attribute_files(tmp_path):
    root = _celeba(tmp_path / "celeba")
    (root / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(data.DataError, match=r"lists 1 images missing.*000005\.jpg"):
        data.load(f"celeba:{root}")
    other = _celeba(tmp_path / "other")
    text = (other / "list_attr_celeba.txt").read_text().replace("000007.jpg -1", "000007.jpg 2")
    (other / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(data.DataError, match=r"line 9: expected a file name and 3 values"):
        data.load(f"celeba:{other}")
    with pytest.raises(data.DataError, match="not in CelebA's layout"):
        data.load(f"celeba:{tmp_path}")


def test_subsets_are_class_balanced_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)  # class-sorted, like MNIST's smoke runs
    x = torch.zeros(1000, 1, 2, 2, dtype=torch.uint8)
    ds = data.Dataset("t", x, x[:100], (2, 2), "made up", labels, labels[:100])
    small = ds.subset(50, 20)
    assert torch.bincount(small.train_labels).tolist() == [5] * 10
    assert len(small.test) == 20
    assert torch.equal(small.train_labels, ds.subset(50, 20).train_labels)


def test_resize_keeps_uint8_and_the_centre():
    x = torch.zeros(2, 1, 4, 8, dtype=torch.uint8)
    x[:, :, :, 2:6] = 255  # the centre square is white
    ds = data.resize(data.Dataset("t", x, x, (1, 4, 8), "made up"), 2)
    assert ds.train.dtype == torch.uint8 and ds.image_shape == (1, 2, 2)
    assert (ds.train == 255).all()


def test_shared_celeba_and_olivetti():
    root = needs_shared("celeba")
    ds = data.load(f"celeba:{root}")
    assert ds.image_shape == (3, 64, 64) and (len(ds.train), len(ds.test)) == (9000, 1000)
    assert len(ds.attribute_names) == 40 and "Eyeglasses" in ds.attribute_names
    share = torch.cat([ds.train_attributes, ds.test_attributes]).float().mean(0)
    assert abs(share[ds.attribute_names.index("Eyeglasses")].item() - 0.067) < 0.005
    faces = data.load("olivetti", root.parent)
    assert faces.image_shape == (1, 64, 64) and len(faces.test) == 40
    assert sorted(faces.test_labels.tolist()) == list(range(40))  # one face per person
