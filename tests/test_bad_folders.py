"""Image folders, array files and the caches, as an adversarial user gives them: image modes
(16-bit, palettes, transparency, CMYK, 1-bit, floats), symbolic links and loops, unreadable
files, ``train/`` alone, decompression bombs and absurd ``--image-size``, files rewritten in
place under the content-keyed caches, damaged cache entries, and broken or half-named ``.npy``
/ ``.npz`` files. Each refusal is one line naming the file and the fix, with nothing changed
on disk; each accepted input gives the pixels it should."""

from __future__ import annotations

import errno
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import config as config_module
from pyro_vae import data
from pyro_vae import run as runs
from pyro_vae.data import cache, imagefiles
from pyro_vae.data import files as files_module
from tests.test_bad_inputs import refused, snapshot

TRAIN = ["--net", "mlp", "--epochs", "1", "--no-progress", "--ll-samples", "0"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / "cache"))


def _grey(path: Path, value: int | np.ndarray, size=(6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full(size, value, np.uint8) if np.isscalar(value) else value
    Image.fromarray(array).save(path)
    return path


def _classes(root: Path, names=("cat", "dog"), n=5) -> Path:
    for c, name in enumerate(names):
        for i in range(n):
            _grey(root / name / f"{i}.png", 20 * c + 3 * i + 1)
    return root


def _train(capsys, spec: str, tmp_path: Path, match: str, *flags: str) -> str:
    out = tmp_path / "run"
    data_root = Path(spec.partition(":")[2])
    line = refused(
        capsys, ["train", "--dataset", spec, *TRAIN, *flags, "--out", str(out)], match, data_root
    )
    assert not out.exists()
    return line


def _png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow writes 16-bit grey only): grey (H, W), RGB
    (H, W, 3) or RGBA (H, W, 4) uint16."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = array.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _idat(raw) + _iend())
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _idat(raw: bytes) -> bytes:
    return _chunk(b"IDAT", zlib.compress(raw))


def _iend() -> bytes:
    return _chunk(b"IEND", b"")


def _bomb(path: Path, side: int) -> Path:
    """A PNG whose header says side x side grey pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _idat(b"\x00" * 16) + _iend())
    return path


def _pixels(path: Path) -> np.ndarray:
    return imagefiles._open(path, None, 1.0)


# -- image modes: each converted to 8-bit grey or RGB as documented ------------------------


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    levels = (np.arange(36, dtype=np.uint16) * 1800).reshape(6, 6)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert np.array_equal(_pixels(tmp_path / "g16.png")[0], (levels >> 8).astype(np.uint8))
    # through a folder too: 16-bit grey files are not 99 % white
    for i in range(4):
        Image.fromarray(levels // (i + 1)).save(_grey(tmp_path / "pics" / f"{i}.png", 0))
    ds = data.load(f"folder:{tmp_path / 'pics'}")
    both = torch.cat([ds.train, ds.test])
    assert ds.image_shape == (1, 6, 6) and int(both.max()) == 246 and (both < 255).all()


def test_16_bit_colour_keeps_the_top_8_bits_like_16_bit_grey(tmp_path):
    rgb = np.stack([np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000] * 3, -1)
    rgb[..., 1] //= 2
    got = _pixels(_png16(tmp_path / "rgb16.png", rgb))
    assert np.array_equal(got, (rgb >> 8).astype(np.uint8).transpose(2, 0, 1))


def test_palette_images_without_and_with_transparency(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 128, 128, 128, 10, 200, 30] + [0] * 756
    img = Image.new("P", (3, 1))
    img.putpalette(palette)
    for x, index in enumerate((1, 2, 3)):
        img.putpixel((x, 0), index)
    img.save(tmp_path / "p.png")
    assert _pixels(tmp_path / "p.png")[:, 0].T.tolist() == [[255, 0, 0], [128] * 3, [10, 200, 30]]
    img.save(tmp_path / "t.png", transparency=1)  # red is transparent: white shows
    assert _pixels(tmp_path / "t.png")[:, 0].T.tolist() == [[255] * 3, [128] * 3, [10, 200, 30]]
    grey = Image.new("P", (2, 1))
    grey.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    grey.putpixel((1, 0), 1)
    grey.save(tmp_path / "grey.gif")
    assert _pixels(tmp_path / "grey.gif").tolist() == [[[0, 200]]]  # a grey palette: one channel


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [10, 20, 30, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    expected = [[255, 255, 255], [10, 20, 30], [132, 137, 142]]  # c*a/255 + 255*(1 - a/255)
    assert _pixels(tmp_path / "rgba.png")[:, 0].T.tolist() == expected
    la = np.array([[[10, 0], [10, 255], [10, 128]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _pixels(tmp_path / "la.png").tolist() == [[[255, 10, 132]]]


def test_cmyk_and_1_bit_images(tmp_path):
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "red.tif")
    assert _pixels(tmp_path / "red.tif")[:, 0, 0].tolist() == [255, 0, 0]
    bits = Image.new("1", (3, 1), 0)
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "b.png")
    assert _pixels(tmp_path / "b.png").tolist() == [[[0, 255, 0]]]


def test_float_images_in_0_1_are_rounded_others_refused(tmp_path):
    Image.fromarray(np.array([[0, 0.25, 1]], np.float32)).save(tmp_path / "f.tif")
    assert _pixels(tmp_path / "f.tif").tolist() == [[[0, 64, 255]]]
    Image.fromarray(np.array([[0, 2.5]], np.float32)).save(tmp_path / "hot.tif")
    with pytest.raises(data.DataError, match=r"hot\.tif holds float pixels spanning \[0, 2\.5\]"):
        _pixels(tmp_path / "hot.tif")
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(data.DataError, match=r"i\.tif holds integer pixels from 0 to 70000"):
        _pixels(tmp_path / "i.tif")


# -- walking folders: links followed once, loops and unreadable files refused ---------------


def test_a_link_back_to_the_folder_is_refused(capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    (root / "cat" / "up").symlink_to("..")
    _train(capsys, f"folder:{root}", tmp_path, r"cat/up leads back to .*pics.*remove the link")


def test_a_link_to_an_ancestor_deeper_down_is_refused(capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    (root / "dog" / "more").mkdir()
    (root / "dog" / "more" / "loop").symlink_to("../..")
    _train(capsys, f"folder:{root}", tmp_path, r"dog/more/loop leads back to .*symbolic link loop")


def test_a_link_cycle_that_never_reaches_a_file_is_refused(capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    (root / "cat" / "a.png").symlink_to("b.png")
    (root / "cat" / "b.png").symlink_to("a.png")
    _train(capsys, f"folder:{root}", tmp_path, r"cat/a\.png is a symbolic link loop")


def test_a_broken_link_to_an_image_is_refused(capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    (root / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    _train(capsys, f"folder:{root}", tmp_path, r"cat/gone\.png is a broken symbolic link")


def test_a_linked_class_folder_is_no_duplicate_class(tmp_path, capsys):
    root = _classes(tmp_path / "pics")
    (root / "kitty").symlink_to("cat")  # the same files again: counted once, under cat
    (root / "a_link").symlink_to("dog")  # sorted before dog, still counted as dog
    ds = data.load(f"folder:{root}")
    assert ds.class_names == ("cat", "dog")
    both = torch.cat([ds.train, ds.test]).reshape(10, -1)[:, 0].sort().values
    assert both.tolist() == sorted(20 * c + 3 * i + 1 for c in range(2) for i in range(5))
    assert "10 file(s) reached again through links counted once" in capsys.readouterr().err


def test_linked_files_in_a_flat_folder_are_not_tested_on_after_training(tmp_path):
    root = tmp_path / "flat"
    for i in range(10):
        _grey(root / f"{i}.png", 10 * i)
        (root / f"copy{i}.png").symlink_to(f"{i}.png")
    ds = data.load(f"folder:{root}")
    assert len(ds.train) + len(ds.test) == 10
    trained = {int(v) for v in ds.train[:, 0, 0, 0]}
    assert not trained & {int(v) for v in ds.test[:, 0, 0, 0]}


def test_a_test_folder_linked_to_the_training_images_is_refused(capsys, tmp_path):
    root = tmp_path / "pics"
    _classes(root / "train")
    (root / "test").mkdir()
    (root / "test" / "cat").symlink_to("../train/cat")
    _grey(root / "test" / "dog" / "0.png", 200)
    _train(capsys, f"folder:{root}", tmp_path, r"test/cat/0\.png is the same file as .*train/cat")


def _no_access(monkeypatch, path: Path, directory: bool) -> None:
    """``path`` unreadable: chmod 000 where permissions apply, else (root) the same error."""
    if os.geteuid() != 0:
        path.chmod(0)  # given back by the test
        return
    denied = PermissionError(errno.EACCES, "Permission denied", str(path))
    if directory:
        scandir = os.scandir

        def fake_scandir(p):
            if Path(p) == path:
                raise denied
            return scandir(p)

        monkeypatch.setattr(imagefiles.os, "scandir", fake_scandir)
    else:
        real_open = open

        def fake_open(p, *args, **kwargs):
            if Path(p) == path:
                raise denied
            return real_open(p, *args, **kwargs)

        monkeypatch.setattr(imagefiles, "open", fake_open, raising=False)


@pytest.mark.parametrize("what", ["class folder", "image file"])
def test_unreadable_folders_and_files_are_one_line(what, capsys, tmp_path, monkeypatch):
    root = _classes(tmp_path / "pics")
    path = root / "dog" if what == "class folder" else root / "cat" / "2.png"
    _no_access(monkeypatch, path, what == "class folder")
    try:
        fix = "chmod u\\+rx" if what == "class folder" else "chmod u\\+r"
        line = _train(capsys, f"folder:{root}", tmp_path, f"cannot be read .*{fix}")
        assert str(path) in line
    finally:
        path.chmod(0o755)


def test_train_alone_is_split_with_a_seed_and_its_classes_kept(tmp_path):
    root = tmp_path / "pics"
    _classes(root / "train", n=10)
    ds = data.load(f"folder:{root}")
    assert ds.class_names == ("cat", "dog")
    assert (len(ds.train), len(ds.test)) == (18, 2) and sorted(ds.test_labels.tolist()) == [0, 1]
    assert torch.equal(data.load(f"folder:{root}").test, ds.test)  # the same split each time
    flat = _classes(tmp_path / "flat", n=10)  # the same images, without train/
    assert torch.equal(data.load(f"folder:{flat}").test, ds.test)
    other_seed = files_module.load_folder(root, seed=1)
    assert not torch.equal(other_seed.test, ds.test) and len(other_seed.test) == 2


def test_test_alone_or_train_beside_val_is_refused(capsys, tmp_path):
    alone = tmp_path / "alone"
    _classes(alone / "test")
    _train(capsys, f"folder:{alone}", tmp_path, r"holds test/ but no train/: put the training")
    val = tmp_path / "val"
    _classes(val / "train")
    _classes(val / "val")
    _train(capsys, f"folder:{val}", tmp_path, r"holds train/ and val/ but no test/: rename val/")


def test_a_class_named_train_beside_other_classes_is_a_class(tmp_path):
    root = _classes(tmp_path / "vehicles", names=("bus", "car", "train"))
    assert data.load(f"folder:{root}").class_names == ("bus", "car", "train")


@pytest.mark.parametrize(
    ("name", "damage", "why"),
    [
        ("cut.png", lambda b: b[: len(b) // 2], "image file is truncated"),
        ("cut.jpg", lambda b: b[: len(b) // 2], "Truncated File Read"),
        ("empty.png", lambda b: b"", "no image format Pillow reads"),
    ],
)
def test_damaged_image_files_are_one_line(name, damage, why, capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "cat" / name)
    (root / "cat" / name).write_bytes(damage((root / "cat" / name).read_bytes()))
    _train(capsys, f"folder:{root}", tmp_path, rf"cat/{name} could not be decoded .*{why}")


def test_a_fifo_named_like_an_image_is_not_read(tmp_path):
    root = _classes(tmp_path / "pics")
    os.mkfifo(root / "cat" / "pipe.png")  # reading it would wait for a writer forever
    assert len(files_module.load_folder(root).train) == 9


# -- too large: refused before anything is allocated ------------------------------------------


@pytest.mark.parametrize("side", [30000, 10000])
def test_a_decompression_bomb_is_one_line(side, capsys, tmp_path):
    root = _classes(tmp_path / "pics")
    _bomb(root / "cat" / "bomb.png", side)
    _train(capsys, f"folder:{root}", tmp_path, r"cat/bomb\.png is too large to decode safely")
    assert not (tmp_path / "cache").exists()


def test_an_absurd_image_size_is_refused_before_decoding(capsys, tmp_path, monkeypatch):
    root = _classes(tmp_path / "pics")
    monkeypatch.setattr(imagefiles, "_open", lambda *a, **k: pytest.fail("decoded"))
    _train(
        capsys,
        f"folder:{root}",
        tmp_path,
        r"--image-size 30000 makes images of",
        "--image-size",
        "30000",
    )
    assert not (tmp_path / "cache").exists()


def test_an_image_size_beyond_the_memory_is_refused(capsys, tmp_path, monkeypatch):
    root = _classes(tmp_path / "pics")
    monkeypatch.setattr(imagefiles, "available_memory", lambda: 2**20)
    _train(
        capsys,
        f"folder:{root}",
        tmp_path,
        r"10 images of 1 x 512 x 512 need .* GiB of memory, more than the 0\.0 GiB available: "
        r"pass a smaller --image-size",
        "--image-size",
        "512",
    )
    np.save(tmp_path / "x.npy", np.zeros((40, 8, 8), np.uint8))
    _train(
        capsys,
        f"array:{tmp_path / 'x.npy'}",
        tmp_path,
        r"40 images of 1 x 512 x 512 need",
        "--image-size",
        "512",
    )


def test_images_too_large_for_the_memory_without_image_size(tmp_path, monkeypatch):
    root = _classes(tmp_path / "pics")
    monkeypatch.setattr(imagefiles, "available_memory", lambda: 100)
    with pytest.raises(data.DataError, match=r"10 images of 1 x 6 x 6 need.*pass --image-size S"):
        data.load(f"folder:{root}")


# -- the caches: keyed by the bytes, damaged entries rebuilt -----------------------------------


def test_a_file_rewritten_in_place_with_its_size_and_time_is_decoded_again(tmp_path):
    root = tmp_path / "pics"
    for i in range(4):
        _grey(root / f"{i}.bmp", 10 * i)  # BMP: the same size whatever the pixels
    first = data.load(f"folder:{root}")
    target = root / "0.bmp"
    before = target.stat()
    _grey(target, 99)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    again = data.load(f"folder:{root}")
    values = lambda ds: sorted(torch.cat([ds.train, ds.test])[:, 0, 0, 0].tolist())  # noqa: E731
    assert values(first) == [0, 10, 20, 30] and values(again) == [10, 20, 30, 99]


def test_a_file_changed_while_it_is_read_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    for i in range(3):
        _grey(root / f"{i}.png", 10 * i)
    digests = imagefiles.file_digests
    monkeypatch.setattr(imagefiles, "file_digests", lambda fs: [b"x" * 32, *digests(fs)[1:]])
    with pytest.raises(data.DataError, match=r"0\.png changed while it was being read"):
        data.load(f"folder:{root}")
    assert not list((tmp_path / "cache").glob("pics-*"))


def test_the_stream_is_keyed_by_every_byte(tmp_path):
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (256, 1, 4, 4), np.uint8))
    swapped = x.clone()
    swapped[[5, 201]] = x[[201, 5]]  # same sum, shape and every 4th row (the old key)
    first, second = cache.stream(x), cache.stream(swapped)
    assert torch.equal(first, x) and torch.equal(second, swapped)
    assert len(list((tmp_path / "cache").glob("stream-*"))) == 2


def test_two_arrays_with_two_images_swapped_stream_their_own_pixels(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (300, 6, 6), dtype=np.uint8)
    swapped = images.copy()
    swapped[[1, 151]] = images[[151, 1]]
    np.savez(tmp_path / "a.npz", x_train=images, x_test=images[:5])
    np.savez(tmp_path / "b.npz", x_train=swapped, x_test=images[:5])
    for name, expected in (("a", images), ("b", swapped)):
        ds = data.load(f"array:{tmp_path / name}.npz").to("cpu", budget=1)  # streamed
        assert torch.equal(ds.train[:, 0], torch.from_numpy(expected))


def test_an_entry_written_meanwhile_by_another_process_is_used(tmp_path, capsys):
    arrays = {"images": np.arange(12, dtype=np.uint8).reshape(3, 1, 2, 2)}

    def make_while_another_writes() -> dict[str, np.ndarray]:
        cache.cached("k", lambda: arrays, "race")  # the other process finishes first
        return {"images": arrays["images"].copy()}

    got = cache.cached("k", make_while_another_writes, "race")
    assert np.array_equal(got["images"], arrays["images"])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["race-k"]  # no temporary left


def _damage(entry: Path, how: str) -> None:
    images = entry / "images.npy"
    if how == "truncated array":
        images.write_bytes(images.read_bytes()[:-7])
    elif how == "empty array":
        images.write_bytes(b"")
    elif how == "missing array":
        images.unlink()
    elif how == "garbage done":
        (entry / "done").write_text("\x00garbage{")
    elif how == "done of other arrays":
        (entry / "done").write_text('{"images": [[3, 1, 2, 2], "|u1"]}')
    elif how == "array of another shape":
        np.save(images, np.zeros((2, 1, 6, 6), np.uint8))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "truncated array",
        "empty array",
        "missing array",
        "garbage done",
        "done of other arrays",
        "array of another shape",
    ],
)
def test_a_damaged_cache_entry_is_rebuilt_with_a_note(how, tmp_path, capsys):
    root = tmp_path / "pics"
    for i in range(4):
        _grey(root / f"{i}.png", 10 * i)
    first = data.load(f"folder:{root}")
    (entry,) = (tmp_path / "cache").glob("*pics-*")
    _damage(entry, how)
    capsys.readouterr()
    again = data.load(f"folder:{root}")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (
        len(err) == 1 and err[0].startswith(f"{entry}: damaged cache entry") and "rebuilt" in err[0]
    )
    assert torch.equal(again.train, first.train) and torch.equal(again.test, first.test)
    capsys.readouterr()
    data.load(f"folder:{root}")  # repaired: read without a note
    assert capsys.readouterr().err == ""


def test_an_unwritable_cache_keeps_the_images_in_memory(tmp_path, monkeypatch, capsys):
    (tmp_path / "blocker").write_text("a file, not a folder")
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / "blocker"))
    root = tmp_path / "pics"
    for i in range(4):
        _grey(root / f"{i}.png", 10 * i)
    ds = data.load(f"folder:{root}")
    assert sorted(torch.cat([ds.train, ds.test])[:, 0, 0, 0].tolist()) == [0, 10, 20, 30]
    assert "could not be written" in capsys.readouterr().err
    x = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    assert torch.equal(cache.stream(x), x)


# -- arrays: damaged, pickled, half-named or empty files ----------------------------------------


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


IMAGES = np.random.default_rng(1).integers(0, 256, (20, 6, 6), dtype=np.uint8)
LABELS = np.arange(20) % 2


def _bad_array(folder: Path, case: str) -> tuple[Path, str]:
    """The file for ``case`` under ``folder`` and its message."""
    folder.mkdir(parents=True, exist_ok=True)
    x = folder / "x.npz"
    if case == "truncated npz":
        _npz(x, images=IMAGES)
        x.write_bytes(x.read_bytes()[:300])
        return x, r"x\.npz could not be read as a \.npy/\.npz file .*damaged \(truncated\?\)"
    if case == "damaged member":
        _npz(x, images=IMAGES)
        raw = bytearray(x.read_bytes())
        raw[100:140] = b"\xff" * 40
        x.write_bytes(bytes(raw))
        return x, r"x\.npz.*(could not be read|damaged)"
    if case == "pickled npy":
        np.save(folder / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return folder / "x.npy", r"x\.npy: its array holds Python objects .*save numeric arrays"
    if case == "pickled npz":
        np.savez(x, images=IMAGES, meta=np.array([{"a": 1}], dtype=object))
        return x, r"x\.npz: its array 'meta' holds Python objects"
    if case == "plain pickle":
        (folder / "x.npy").write_bytes(pickle.dumps({"images": IMAGES}))
        return folder / "x.npy", r"x\.npy could not be read as a \.npy/\.npz file"
    if case == "x_train without x_test":
        _npz(x, x_train=IMAGES, y_train=LABELS)
        return x, r"x\.npz holds 'x_train' but no 'x_test' \(the test images\): add it"
    if case == "x_test without x_train":
        _npz(x, x_test=IMAGES)
        return x, r"holds 'x_test' but no 'x_train' \(the training images\)"
    if case == "train without test":
        _npz(x, train=IMAGES)
        return x, r"holds 'train' but no 'test'"
    if case == "unknown names":
        _npz(x, imgs=IMAGES, lbls=LABELS)
        return x, r"holds arrays \['imgs', 'lbls'\]: name the arrays x_train/x_test"
    if case == "labels without images":
        _npz(x, data=IMAGES, labels=LABELS)
        return x, r"holds 'labels' but no 'images'"
    if case == "empty array":
        np.save(folder / "x.npy", np.zeros((0, 6, 6), np.uint8))
        return folder / "x.npy", r"x\.npy: the array holds no images"
    if case == "empty training split":
        _npz(x, x_train=IMAGES[:0], x_test=IMAGES)
        return x, r"x\.npz\[x_train\]: the array holds no images"
    if case == "images of no pixels":
        np.save(folder / "x.npy", np.zeros((5, 0, 6), np.uint8))
        return folder / "x.npy", r"images of 0 x 6 pixels"
    if case == "empty rows":
        np.save(folder / "x.npy", np.zeros((0, 5), np.float32))
        return folder / "x.npy", r"holds no data"
    if case == "NaN floats":
        floats = IMAGES / 255.0
        floats[3, 2, 2] = np.nan
        np.save(folder / "x.npy", floats)
        return folder / "x.npy", r"x\.npy: 1 pixel values are NaN or inf: repair or drop"
    if case == "labels of another count":
        _npz(x, images=IMAGES, labels=LABELS[:-1])
        return (
            x,
            r"x\.npz\[labels\]: labels must be 20 integers \(one per image\); got int64 \(19,\)",
        )
    if case == "float64 levels 0..255":
        np.save(folder / "x.npy", IMAGES.astype(np.float64))
        return folder / "x.npy", r"float images must lie in \[0, 1\]; these span \[0, 255\]"
    if case == "splits of other shapes":
        _npz(x, x_train=IMAGES, x_test=np.zeros((4, 5, 5), np.uint8))
        return x, r"x_train holds images of \(1, 6, 6\) and x_test of \(1, 5, 5\)"
    if case == "a folder":
        (folder / "x.npy").mkdir()
        return folder / "x.npy", r"x\.npy is a folder: give a \.npy or \.npz file"
    raise AssertionError(case)


ARRAY_CASES = [
    "truncated npz",
    "damaged member",
    "pickled npy",
    "pickled npz",
    "plain pickle",
    "x_train without x_test",
    "x_test without x_train",
    "train without test",
    "unknown names",
    "labels without images",
    "empty array",
    "empty training split",
    "images of no pixels",
    "empty rows",
    "NaN floats",
    "labels of another count",
    "float64 levels 0..255",
    "splits of other shapes",
    "a folder",
]


@pytest.mark.parametrize("case", ARRAY_CASES)
def test_bad_array_files_are_one_line(case, capsys, tmp_path):
    path, message = _bad_array(tmp_path / "data", case)
    out = tmp_path / "run"
    argv = ["train", "--dataset", f"array:{path}", *TRAIN, "--out", str(out)]
    line = refused(capsys, argv, message, tmp_path / "data")
    assert str(path) in line and not out.exists()


def test_bool_arrays_and_single_arrays_of_any_name_are_images(tmp_path):
    np.save(tmp_path / "b.npy", IMAGES > 128)
    ds = data.load(f"array:{tmp_path / 'b.npy'}")
    assert ds.is_binary and set(torch.cat([ds.train, ds.test]).unique().tolist()) == {0, 255}
    _npz(tmp_path / "one.npz", digits=IMAGES)
    assert len(data.load(f"array:{tmp_path / 'one.npz'}").train) == 18


# -- the inputs of a trained model (encode, reconstruct...) -----------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    np.savez(root / "d.npz", x_train=IMAGES, x_test=IMAGES[:4], y_train=LABELS, y_test=LABELS[:4])
    out = root / "run"
    cfg = config_module.TrainConfig(dataset=f"array:{root / 'd.npz'}", epochs=1, ll_samples=0)
    runs.train(config_module.ModelConfig(z_dim=2, hidden=(8,), net="mlp"), cfg, out, progress=False)
    return out


def test_inputs_take_train_alone_and_refuse_loops_and_bad_arrays(small_run, capsys, tmp_path):
    root = tmp_path / "pics"
    _classes(root / "train")
    inputs = files_module.read_inputs([f"folder:{root}"], (1, 6, 6))
    assert inputs.labels.tolist() == [0] * 5 + [1] * 5  # cat and dog, not one class 'train'
    (root / "train" / "cat" / "up").symlink_to("../..")
    checkpoint = str(small_run / "checkpoint.pt")
    out = tmp_path / "codes.npz"
    argv = ["encode", checkpoint, "--input", f"folder:{root}", "--out", str(out)]
    refused(capsys, argv, r"cat/up leads back to", root, small_run)
    path, message = _bad_array(tmp_path / "arrays", "pickled npz")
    argv = ["encode", checkpoint, "--input", f"array:{path}", "--out", str(out)]
    refused(capsys, argv, message, tmp_path / "arrays", small_run)
    path, message = _bad_array(tmp_path / "shapes", "splits of other shapes")
    argv = ["encode", checkpoint, "--input", f"array:{path}", "--out", str(out)]
    refused(capsys, argv, r"x_test\]: images of \(1, 5, 5\), those of x_train are", small_run)
    assert not out.exists()


def test_nothing_in_the_data_folder_changes_when_it_is_loaded(tmp_path):
    root = _classes(tmp_path / "pics")
    (root / "kitty").symlink_to("cat")
    before = snapshot(root)
    data.load(f"folder:{root}")
    data.load(f"folder:{root}", image_size=4)
    assert snapshot(root) == before
