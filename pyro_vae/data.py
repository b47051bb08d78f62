"""The data layer: image data sets as whole tensors, binarization, and batches.

A :class:`Dataset` keeps each split as it is stored, **uint8 images (N, C, H, W)** with values
0..255 (binarized data as 0 and 255), a quarter of float32's memory; :func:`as_input` turns a
batch into what models read, float rows (n, C*H*W) in [0, 1]. Training slices batches from a
per-epoch permutation on the device, with no per-sample loader. (A float tensor (N, ...) in
[0, 1] is accepted too, as data a user made in Python.)

Where IDX files are looked for (first hit wins):

1. ``data_dir`` (``--data-dir``), then the folder named by the environment variable
   ``PYRO_VAE_DATA``; in each, the folder itself, ``<folder>/<name>`` and torchvision's
   ``<folder>/<TorchvisionName>/raw``;
2. MNIST: the four IDX files shipped with the package (``pyro_vae/mnist``, CC BY-SA 3.0), so
   the default data set is there on every machine, with no download;
3. Fashion-MNIST: torchvision's download into ``data_dir`` (or ``~/.cache/pyro-vae``), when
   torchvision is installed and importable and the network is there, then Debian's
   ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import itertools
import math
import os
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from . import checkpoint, distributed, dsprites, imagefiles
from .imagefiles import DataError
from .registry import Registry, construct, one_of

T = TypeVar("T")

ENV_VAR = "PYRO_VAE_DATA"
CACHE_DIR = Path.home() / ".cache" / "pyro-vae"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
BINARIZATIONS = ("dynamic", "fixed", "none")


@dataclass(frozen=True)
class Dataset:
    """Train/test images, uint8 (N, C, H, W) in 0..255 (or float (N, ...) in [0, 1]), plus
    class labels and named binary attributes (CelebA's) where known.

    ``image_shape`` is (C, H, W); an (H, W) given is read as one grey channel. Turn a batch
    into the model's input with :func:`as_input`.
    """

    name: str
    train: Tensor
    test: Tensor
    image_shape: tuple[int, ...]
    source: str
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    valid: Tensor | None = None
    attribute_names: tuple[str, ...] = ()
    train_attributes: Tensor | None = None  # (N, len(attribute_names)) bool
    test_attributes: Tensor | None = None
    class_names: tuple[str, ...] = ()
    factor_names: tuple[str, ...] = ()  # ground-truth generative factors (dSprites)
    train_factors: Tensor | None = None  # (N, len(factor_names)) int64 indices
    test_factors: Tensor | None = None

    def __post_init__(self) -> None:
        shape = chw(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        for split, t in (("train", self.train), ("test", self.test)):
            if math.prod(t.shape[1:]) != math.prod(shape):
                raise DataError(
                    f"{self.name}: {split} data of shape {tuple(t.shape)} do not hold images "
                    f"of shape {shape}"
                )

    @property
    def x_dim(self) -> int:
        return math.prod(self.image_shape)

    @property
    def is_binary(self) -> bool:
        top = 255 if self.train.dtype == torch.uint8 else 1
        return bool(((self.train == 0) | (self.train == top)).all())

    @property
    def is_8bit(self) -> bool:
        """Grey or colour levels 0..255 (not binarized): scored in bits per dimension too."""
        return self.train.dtype == torch.uint8 and not self.is_binary

    def to(self, device: torch.device | str, budget: float | None = None) -> Dataset:
        """The data set on ``device``; with ``budget`` (bytes), a training set larger than it
        stays off the device, in a memory-mapped file (:func:`stream`), and batches are
        copied to the device one at a time."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        big = budget is not None and self.train.nbytes > budget
        if big:
            print(
                f"{self.name}: the training images ({self.train.nbytes / 2**30:.2f} GiB) exceed "
                f"the data memory budget ({budget / 2**30:.2f} GiB): batches stream from a "
                "memory-mapped file",
                file=sys.stderr,
            )
        return replace(
            self,
            train=stream(self.train) if big else move(self.train),
            test=move(self.test),
            train_labels=move(self.train_labels),
            test_labels=move(self.test_labels),
            valid=move(self.valid),
            train_attributes=move(self.train_attributes),
            test_attributes=move(self.test_attributes),
            train_factors=move(self.train_factors),
            test_factors=move(self.test_factors),
        )

    def fingerprint(self) -> str:
        """A short digest of the data: every test image and label, the training set's shape
        and up to 1,000 of its images evenly spread (so that resuming or evaluating a run on
        other data than it was trained on is noticed)."""
        h = hashlib.sha256()
        step = max(1, -(-len(self.train) // 1000))
        for part in (self.test, self.test_labels, self.train[::step], self.train_labels):
            if part is not None:
                checkpoint.digest_tensor(h, part)
        h.update(f"{tuple(self.train.shape)}".encode())
        return h.hexdigest()[:16]

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> Dataset:
        """``n_train`` training and ``n_test`` test data (for quick runs), drawn with ``seed``:
        as equal a share of each class as the labels allow, else at random; in the data's
        order. ``None`` keeps a split whole."""

        def pick(n: int | None, x: Tensor, labels: Tensor | None, offset: int) -> Tensor | None:
            if n is None or n >= len(x):
                return None
            return spread_subset(labels, len(x), n, seed + offset)

        keep_train = pick(n_train, self.train, self.train_labels, 0)
        keep_test = pick(n_test, self.test, self.test_labels, 1)
        take = lambda t, idx: t if t is None or idx is None else t[idx.to(t.device)]  # noqa: E731
        return replace(
            self,
            train=take(self.train, keep_train),
            test=take(self.test, keep_test),
            train_labels=take(self.train_labels, keep_train),
            test_labels=take(self.test_labels, keep_test),
            train_attributes=take(self.train_attributes, keep_train),
            test_attributes=take(self.test_attributes, keep_test),
            train_factors=take(self.train_factors, keep_train),
            test_factors=take(self.test_factors, keep_test),
        )


def chw(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) from an image shape: (H, W) is one grey channel."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"an image shape is (C, H, W) or (H, W), not {shape}")
    return shape  # type: ignore[return-value]


def stream(x: Tensor) -> Tensor:
    """``x`` as a CPU tensor over a memory-mapped file (in the image cache folder, named by
    its contents): pages are read as batches touch them and the RAM copy can go."""
    array = x.cpu().numpy()
    key = hashlib.sha256(np.ascontiguousarray(array[:: max(1, len(array) // 64)]).tobytes())
    key.update(repr((array.shape, array.dtype.str, float(array.sum(dtype=np.float64)))).encode())
    arrays = imagefiles.cached(key.hexdigest()[:20], lambda: {"train": array}, "stream")
    with warnings.catch_warnings():  # read-only on purpose: batches only read it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arrays["train"])


def as_input(x: Tensor) -> Tensor:
    """What models read: a batch of stored images (n, ...) as float rows (n, C*H*W) in [0, 1]
    (uint8 levels divided by 255)."""
    x = x.reshape(x.shape[0], -1)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def spread_subset(labels: Tensor | None, size: int, n: int, seed: int) -> Tensor:
    """Sorted indices of ``n`` of ``size`` data, chosen with ``seed``: with labels, class by
    class in turn (so every class gets ``n // classes`` or one more, where it has them)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(size, generator=gen)
    if labels is None:
        return perm[:n].sort().values
    labels = labels.cpu()[perm]
    # rank of each datum within its class (in the shuffled order), then take by rank
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty(size, dtype=torch.long)
    rank[order] = torch.arange(size) - starts
    chosen = torch.argsort(rank * size + torch.arange(size), stable=True)[:n]
    return perm[chosen].sort().values


# --- IDX files (MNIST, Fashion-MNIST) --------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes, checking magic and size.

    The magic number is 0x0000 0x08 (unsigned bytes) and the number of dimensions: 2049 for
    MNIST's labels, 2051 for its images."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path} could not be read ({e}): the file is truncated or corrupt; delete it and "
            "fetch it again"
        ) from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    ndim = magic - 0x0800
    if not 1 <= ndim <= 4:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (magic number {magic}, expected 2051 "
            "for images or 2049 for labels); replace it with the original file"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header ({dims}) needs {expected}: the file "
            "is truncated or corrupt; delete it and fetch it again"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


@dataclass(frozen=True)
class IdxSet:
    """File names and folder names of one IDX data set."""

    name: str
    torchvision_name: str
    n_train: int = 60000
    n_test: int = 10000

    def files(self, split: str) -> tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    def subfolders(self) -> list[str]:
        return [self.name, f"{self.torchvision_name}/raw"]


MNIST = IdxSet("mnist", "MNIST")
FASHION_MNIST = IdxSet("fashion-mnist", "FashionMNIST")


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_folder(spec: IdxSet, folder: Path) -> Dataset | None:
    """The data set from ``folder`` if all four files are there, else None."""
    paths = [_find(folder, stem) for split in ("train", "test") for stem in spec.files(split)]
    if any(p is None for p in paths):
        return None
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    for images, labels, n, split in (
        (train_x, train_y, spec.n_train, "train"),
        (test_x, test_y, spec.n_test, "test"),
    ):
        if images.shape[1:] != (28, 28) or images.shape[0] != n or labels.shape != (n,):
            raise DataError(
                f"{folder}: {spec.name} {split} split has images {images.shape} and labels "
                f"{labels.shape}, expected ({n}, 28, 28) and ({n},); replace the files"
            )
    return Dataset(
        name=spec.name,
        train=to_images(train_x),
        test=to_images(test_x),
        image_shape=tuple(train_x.shape[1:]),
        source=str(folder),
        train_labels=torch.from_numpy(train_y.astype(np.int64)),
        test_labels=torch.from_numpy(test_y.astype(np.int64)),
    )


def to_images(images: np.ndarray) -> Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) as a uint8 tensor (N, C, H, W)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"expected uint8 images (N, H, W[, C]), got {images.dtype} {images.shape}")
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images)
    return torch.from_numpy(images if images.flags.writeable else images.copy())


def _roots(data_dir: str | os.PathLike | None) -> list[Path]:
    roots = [Path(data_dir).expanduser()] if data_dir else []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    return roots


def _search(
    data_dir: str | os.PathLike | None, subfolders: Sequence[str], load: Callable[[Path], T | None]
) -> tuple[T | None, list[str]]:
    """``load(folder)`` for each root (``data_dir``, then ``$PYRO_VAE_DATA``) and each of its
    ``subfolders`` in turn: the first result that is not None, and the folders looked in."""
    roots = _roots(data_dir)
    looked = [] if roots else [f"no --data-dir given and ${ENV_VAR} unset"]
    for root in roots:
        for folder in (root, *(root / s for s in subfolders)):
            looked.append(str(folder))
            found = load(folder)
            if found is not None:
                return found, looked
    return None, looked


def _torchvision_download(spec: IdxSet, root: Path) -> tuple[Dataset | None, str]:
    if importlib.util.find_spec("torchvision") is None:
        return None, "torchvision download: torchvision is not installed"
    try:
        import torchvision.datasets as tvd  # lazy: it fails to import on CPU-only torch builds

        cls = getattr(tvd, spec.torchvision_name)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as e:  # network down, broken torchvision build, disk full...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, f"torchvision download into {root}: failed ({reason})"
    return _load_idx_folder(spec, root / spec.torchvision_name / "raw"), f"torchvision ({root})"


def _load_idx_set(
    spec: IdxSet,
    data_dir: str | os.PathLike | None,
    extra: list[Path] = (),  # type: ignore[assignment]
) -> tuple[Dataset | None, list[str]]:
    found, looked = _search(data_dir, spec.subfolders(), lambda f: _load_idx_folder(spec, f))
    if found is not None:
        return found, looked
    found, note = _torchvision_download(spec, Path(data_dir) if data_dir else CACHE_DIR)
    looked.append(note)
    if found is not None:
        return found, looked
    for folder in extra:
        looked.append(str(folder))
        for sub in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
            found = _load_idx_folder(spec, sub)
            if found is not None:
                return found, looked
    return None, looked


def _not_found(spec: IdxSet, looked: list[str]) -> DataError:
    return DataError(
        f"{spec.name} IDX files ({', '.join(spec.files('train') + spec.files('test'))}, "
        f"optionally .gz) not found; looked in: {'; '.join(looked)}. Put them in a folder and "
        f"pass --data-dir DIR or set {ENV_VAR}=DIR, or install torchvision on a machine with "
        "internet"
    )


# the four IDX files shipped with the package (CC BY-SA 3.0; see pyro_vae/mnist/README.md)
PACKAGED_MNIST = Path(__file__).parent / "mnist"


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Full MNIST (60,000 train / 10,000 test, grey levels): from ``data_dir`` or
    ``$PYRO_VAE_DATA`` when given, else the copy shipped with the package. A ``data_dir``
    without the files is an error (``$PYRO_VAE_DATA`` without them: a note, and the copy)."""
    if data_dir or os.environ.get(ENV_VAR):
        found, looked = _search(data_dir, MNIST.subfolders(), lambda f: _load_idx_folder(MNIST, f))
        if found is not None:
            return found
        if data_dir:  # asked for explicitly: never another data set in its place
            raise DataError(
                f"{_not_found(MNIST, looked)}; or leave out --data-dir to use the copy shipped "
                "with pyro-vae"
            )
        print(
            f"note: MNIST's IDX files are not in {'; '.join(looked)}: using the copy shipped "
            "with pyro-vae",
            file=sys.stderr,
        )
    found = _load_idx_folder(MNIST, PACKAGED_MNIST)
    if found is None:
        raise _not_found(MNIST, [str(PACKAGED_MNIST)])
    return found


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test, grey levels)."""
    found, looked = _load_idx_set(FASHION_MNIST, data_dir, extra=[DEBIAN_FASHION_MNIST])
    if found is None:
        raise DataError(
            str(_not_found(FASHION_MNIST, looked))
            + " (Debian: apt-get install dataset-fashion-mnist)"
        )
    return found


# --- Fixed binarized MNIST (Larochelle's .amat) ------------------------------------------------

AMAT_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}


def read_amat(path: Path, rows: int, cols: int = 784) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` file: one image per line, ``cols`` 0/1 values."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path} could not be read ({e}); delete it and fetch it again") from None
    line = 2 * cols  # "v v v ... v\n": one character and one separator per value
    chars = np.frombuffer(raw, np.uint8)
    if chars.size != rows * line:
        raise DataError(
            f"{path} holds {chars.size} bytes, expected {rows} lines of {cols} space-separated "
            f"0/1 values ({rows * line} bytes): the file is truncated or corrupt; fetch it again"
        )
    values = chars.reshape(rows, line)[:, ::2] - ord("0")
    if values.max() > 1:
        raise DataError(f"{path} holds values other than 0 and 1; fetch it again")
    return values


def load_binarized_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The fixed binarization of MNIST (Salakhutdinov & Murray 2008; Larochelle's files):
    50,000 train, 10,000 valid, 10,000 test, values in {0, 1}. No labels."""
    found, looked = _search(data_dir, ["binarized_mnist", "binarized-mnist"], _load_amat_folder)
    if found is None:
        raise DataError(
            "binarized_mnist_{train,valid,test}.amat[.gz] not found; looked in: "
            f"{'; '.join(looked)}. Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    return found


def _load_amat_folder(folder: Path) -> Dataset | None:
    paths = {s: _find(folder, f"binarized_mnist_{s}.amat") for s in AMAT_SPLITS}
    if not all(paths.values()):
        return None
    splits = {  # 0/1 values stored as 0/255, like every binarized set
        s: to_images((read_amat(p, AMAT_SPLITS[s]) * 255).astype(np.uint8).reshape(-1, 28, 28))  # type: ignore[arg-type]
        for s, p in paths.items()
    }
    return Dataset(
        name="binarized-mnist",
        train=splits["train"],
        test=splits["test"],
        valid=splits["valid"],
        image_shape=(28, 28),
        source=str(folder),
    )


# --- Frey faces ---------------------------------------------------------------------------------

FREY_TEST = 200


def load_frey_faces(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Brendan Frey's 1,965 face images of 28 x 20 grey levels (``frey_rawface.mat``, key
    ``ff``, as used by Kingma & Welling); a seeded split leaves 200 for testing. No labels."""

    def load(folder: Path) -> Dataset | None:
        path = folder / "frey_rawface.mat"
        return _read_frey(path) if path.is_file() else None

    found, looked = _search(data_dir, ["frey_faces", "frey-faces"], load)
    if found is None:
        raise DataError(
            f"frey_rawface.mat not found; looked in: {'; '.join(looked)}. "
            f"Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    return found


def _read_frey(path: Path) -> Dataset:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading frey_rawface.mat needs scipy: pip install scipy") from None
    try:
        faces = loadmat(path)["ff"]
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise DataError(f"{path} could not be read ({e}); fetch it again") from None
    if faces.shape != (560, 1965) or faces.dtype != np.uint8:
        raise DataError(f"{path}: 'ff' is {faces.shape} {faces.dtype}, expected (560, 1965) uint8")
    images = to_images(np.ascontiguousarray(faces.T).reshape(-1, 28, 20))
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return Dataset(
        name="frey-faces",
        train=images[perm[FREY_TEST:]],
        test=images[perm[:FREY_TEST]],
        image_shape=(28, 20),
        source=str(path),
    )


# --- Your own images: folders, arrays, CelebA; Olivetti faces ------------------------------

TEST_FRACTION = 0.1  # held out, with a seed, where a folder or array has no test split


def split(
    images: Tensor, labels: Tensor | None, seed: int = 0, fraction: float = TEST_FRACTION
) -> tuple[Tensor, Tensor]:
    """Indices (train, test) of a seeded split: ``fraction`` of the data (at least one) for
    testing, balanced over the classes where labels are given."""
    n = len(images)
    if n < 2:
        raise DataError(f"{n} image(s) cannot be split into train and test: give at least 2")
    n_test = min(n - 1, max(1, round(n * fraction)))
    test = spread_subset(labels, n, n_test, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[test] = False
    return keep.nonzero().squeeze(1), test


def _labelled(
    name: str,
    source: str,
    train: Tensor,
    test: Tensor,
    train_labels: Tensor | None,
    test_labels: Tensor | None,
    **extra: object,
) -> Dataset:
    return Dataset(
        name=name,
        train=train,
        test=test,
        image_shape=tuple(train.shape[1:]),
        source=source,
        train_labels=train_labels,
        test_labels=test_labels,
        **extra,  # type: ignore[arg-type]
    )


def _from_decoded(name: str, source: str, splits: dict[str, imagefiles.Decoded]) -> Dataset:
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{source}: train images are {train.images.shape[1:]} and test images "
            f"{test.images.shape[1:]} (C, H, W): pass --image-size S to bring both to S x S"
        )
    if (train.labels is None) != (test.labels is None) or train.class_names != test.class_names:
        raise DataError(
            f"{source}: train/ and test/ must both have the same class folders, or neither "
            f"(train: {list(train.class_names)[:5]}, test: {list(test.class_names)[:5]})"
        )
    label = lambda d: None if d.labels is None else torch.from_numpy(np.array(d.labels))  # noqa: E731
    return _labelled(
        name,
        source,
        torch.from_numpy(np.array(train.images)),
        torch.from_numpy(np.array(test.images)),
        label(train),
        label(test),
        class_names=train.class_names,
    )


def load_folder(path: str | os.PathLike, image_size: int | None = None, seed: int = 0) -> Dataset:
    """A folder of PNG/JPEG images (``--dataset folder:PATH``): class subfolders become labels
    (a flat folder has none); ``train/`` and ``test/`` subfolders are used when present, else
    a seeded 10% is held out for testing (balanced over the classes). With ``image_size``,
    each image is centre-cropped to a square and resized to S x S. Decoded once, then read
    from the cache (:func:`pyro_vae.imagefiles.cache_dir`)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder: give --dataset folder:PATH with a folder of images"
        )
    name, source = f"folder:{path}", str(folder)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        splits = {s: imagefiles.load_split(folder / s, image_size) for s in ("train", "test")}
        return _from_decoded(name, source, splits)
    whole = imagefiles.load_split(folder, image_size)
    images = torch.from_numpy(np.array(whole.images))
    labels = None if whole.labels is None else torch.from_numpy(np.array(whole.labels))
    tr, te = split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    return _labelled(
        name,
        source,
        images[tr],
        images[te],
        pick(labels, tr),
        pick(labels, te),
        class_names=whole.class_names,
    )


ARRAY_KEYS = (("x_train", "x_test", "y_train", "y_test"), ("train", "test", None, None))


def load_array(path: str | os.PathLike, seed: int = 0) -> Dataset:
    """Images in a NumPy file (``--dataset array:PATH``): a ``.npy`` array of images, or an
    ``.npz`` with ``x_train``/``x_test`` (and ``y_train``/``y_test``), ``train``/``test``, or
    ``images`` (and ``labels``); without a test split a seeded 10% is held out. Images are
    (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or floats in [0, 1]."""
    file = Path(path).expanduser()
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"{file} could not be read as a .npy/.npz file ({e}): check the path"
        ) from None
    where = str(file)
    if isinstance(loaded, np.ndarray):
        arrays = {"images": loaded}
    else:
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    to_t = lambda a, w: torch.from_numpy(imagefiles.as_uint8_images(a, w))  # noqa: E731
    for x_tr, x_te, y_tr, y_te in ARRAY_KEYS:
        if x_tr in arrays and x_te in arrays:
            train, test = (
                to_t(arrays[x_tr], f"{where}[{x_tr}]"),
                to_t(arrays[x_te], f"{where}[{x_te}]"),
            )
            labels = [
                torch.from_numpy(imagefiles.as_labels(arrays[k], len(x), f"{where}[{k}]"))
                if k in arrays
                else None
                for k, x in ((y_tr, train), (y_te, test))
            ]
            return _labelled(f"array:{path}", where, train, test, *labels)
    key = "images" if "images" in arrays else next(iter(arrays), None)
    if key is None or (len(arrays) > 2 and "images" not in arrays):
        raise DataError(
            f"{where} holds arrays {sorted(arrays)}: name them x_train/x_test (y_train/y_test), "
            "train/test, or images (labels)"
        )
    images = to_t(arrays[key], f"{where}[{key}]" if len(arrays) > 1 else where)
    labels = None
    if "labels" in arrays:
        labels = torch.from_numpy(
            imagefiles.as_labels(arrays["labels"], len(images), f"{where}[labels]")
        )
    tr, te = split(images, labels, seed)
    pick = lambda t, i: None if t is None else t[i]  # noqa: E731
    return _labelled(
        f"array:{path}", where, images[tr], images[te], pick(labels, tr), pick(labels, te)
    )


CELEBA_SIZE = 64
CELEBA_TEST = 1000  # held out where list_eval_partition.txt is absent


def load_celeba(
    data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> Dataset:
    """CelebA's aligned faces in CelebA's own layout (``img_align_celeba/`` and
    ``list_attr_celeba.txt``; ``list_eval_partition.txt`` when present, else a seeded split
    holding out 1,000), the central crop resized to ``image_size`` (64) squared; the 40
    attributes become named binary labels (``attribute_names``, ``*_attributes``). Looked for
    in ``data_dir`` (or ``$PYRO_VAE_DATA``) and its ``celeba/``; ``--dataset celeba:PATH``
    names the folder."""
    found, looked = _search(
        data_dir, ["celeba", "CelebA"], lambda f: f if imagefiles.is_celeba(f) else None
    )
    if found is None:
        raise DataError(
            f"CelebA ({imagefiles.CELEBA_IMAGES}/ and {imagefiles.CELEBA_ATTRIBUTES}) not found; "
            f"looked in: {'; '.join(looked)}. Pass --data-dir DIR or --dataset celeba:PATH"
        )
    return _celeba(found, image_size or CELEBA_SIZE, name="celeba")


def load_celeba_folder(path: str | os.PathLike, image_size: int | None = None) -> Dataset:
    folder = Path(path).expanduser()
    if not imagefiles.is_celeba(folder):
        raise DataError(
            f"{folder} is not in CelebA's layout: it needs {imagefiles.CELEBA_IMAGES}/ and "
            f"{imagefiles.CELEBA_ATTRIBUTES}"
        )
    return _celeba(folder, image_size or CELEBA_SIZE, name=f"celeba:{path}")


def _celeba(folder: Path, size: int, name: str) -> Dataset:
    decoded, attributes, names = imagefiles.load_celeba(folder, size)
    images = torch.from_numpy(np.array(decoded.images))
    attrs = torch.from_numpy(attributes)
    partition_file = folder / imagefiles.CELEBA_PARTITION
    if partition_file.is_file():
        part = imagefiles.read_celeba_partition(partition_file)
        which = torch.tensor([part.get(f, 0) for f in decoded.files])
        tr, te, va = ((which == k).nonzero().squeeze(1) for k in (0, 2, 1))
        if len(te) == 0:
            tr, te = split(images, None, 0, CELEBA_TEST / len(images))
            va = None
    else:
        tr, te = split(images, None, 0, min(0.5, CELEBA_TEST / len(images)))
        va = None
    return Dataset(
        name=name,
        train=images[tr],
        test=images[te],
        valid=None if va is None or len(va) == 0 else images[va],
        image_shape=tuple(images.shape[1:]),
        source=str(folder),
        attribute_names=names,
        train_attributes=attrs[tr],
        test_attributes=attrs[te],
    )


def load_olivetti(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The Olivetti faces (AT&T Cambridge): 400 grey 64 x 64 faces of 40 people
    (``olivetti_faces.npz`` with ``images`` and ``labels``, the person); a seeded split holds
    out 40, one per person."""

    def find(folder: Path) -> Path | None:
        path = folder / "olivetti_faces.npz"
        return path if path.is_file() else None

    found, looked = _search(data_dir, ["olivetti"], find)
    if found is None:
        raise DataError(
            f"olivetti_faces.npz not found; looked in: {'; '.join(looked)}. "
            f"Pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    ds = load_array(found)
    return replace(ds, name="olivetti")


DSPRITES_TEST = 10_000


def load_dsprites(data_dir: str | os.PathLike | None = None) -> Dataset:
    """dSprites: 737,280 binary 64 x 64 sprites over five factors (:mod:`pyro_vae.dsprites`).
    DeepMind's ``.npz`` where found in the data folder, else the library's re-rendering of
    the same factor grid (built once into the image cache, then memory-mapped). Training uses
    every image, as the disentanglement literature does; the test split is a seeded 10,000 of
    them (so the test ELBO is not a held-out number). Factor indices are ``train_factors`` /
    ``test_factors``."""

    def find(folder: Path) -> Path | None:
        path = folder / dsprites.DEEPMIND_FILE
        return path if path.is_file() else None

    found, _ = _search(data_dir, ["dsprites", "dsprites-dataset"], find)
    if found is not None:
        with np.load(found, allow_pickle=False) as f:
            images = np.ascontiguousarray(f["imgs"], dtype=np.uint8)[:, None] * np.uint8(255)
            factors = np.ascontiguousarray(f["latents_classes"][:, 1:], dtype=np.int64)
        source = f"DeepMind's dSprites ({found})"
    else:

        def make() -> dict[str, np.ndarray]:
            images, factors = dsprites.generate()
            return {"images": images, "factors": factors}

        key = f"v2-r{dsprites.RADIUS:g}-c{dsprites.FIRST_CENTRE}"
        arrays = imagefiles.cached(key, make, "dsprites")
        images, factors = arrays["images"], arrays["factors"]
        source = "re-rendered by pyro_vae.dsprites (not DeepMind's file)"
    with warnings.catch_warnings():  # the cache is read-only on purpose: batches only read it
        warnings.simplefilter("ignore", UserWarning)
        x, f = torch.from_numpy(images), torch.from_numpy(np.asarray(factors))
    test = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:DSPRITES_TEST]
    test = test.sort().values
    return Dataset(
        "dsprites",
        x,
        x[test],
        (1, dsprites.SIZE, dsprites.SIZE),
        source,
        factor_names=dsprites.FACTOR_NAMES,
        train_factors=f,
        test_factors=f[test],
    )


def attribute(dataset: Dataset, name: str, split: str = "test") -> Tensor:
    """The bool column of a named attribute (CelebA's ``Blond_Hair``...) for a split."""
    if not dataset.attribute_names:
        raise ValueError(f"{dataset.name} has no attributes: use --dataset celeba")
    if name not in dataset.attribute_names:
        one_of(name, dataset.attribute_names, "attribute")
    table = dataset.test_attributes if split == "test" else dataset.train_attributes
    return table[:, dataset.attribute_names.index(name)]  # type: ignore[index]


def resize(dataset: Dataset, size: int) -> Dataset:
    """Every image centre-cropped to a square and resized to size x size (antialiased)."""
    c, h, w = dataset.image_shape
    if (h, w) == (size, size):
        return dataset

    def go(x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        out = []
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        for xb in x.reshape(-1, c, h, w).split(1024):
            xb = as_input(xb).reshape(-1, c, h, w)[:, :, top : top + side, left : left + side]
            xb = torch.nn.functional.interpolate(
                xb, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            out.append(xb)
        y = torch.cat(out).clamp(0, 1)
        return y.mul(255).round().to(torch.uint8) if x.dtype == torch.uint8 else y

    return replace(
        dataset,
        train=go(dataset.train),
        test=go(dataset.test),
        valid=go(dataset.valid),
        image_shape=(c, size, size),
    )


# Data sets by name: each loader takes the data folder (or None), and ``image_size`` where it
# decodes files. A user's loader is named by import path (``--dataset mypkg.data:load``) or
# added through the ``pyro_vae.datasets`` entry point group.
DATASETS: Registry = Registry("dataset", group="pyro_vae.datasets")
DATASETS.register("mnist", load_mnist, "MNIST, 60,000 / 10,000 (default)")
DATASETS.register("fashion-mnist", load_fashion_mnist, "Fashion-MNIST, 60,000 / 10,000")
DATASETS.register("binarized-mnist", load_binarized_mnist, "Larochelle's fixed binarization")
DATASETS.register("frey-faces", load_frey_faces, "Frey faces, 1,965 of 28 x 20")
DATASETS.register("olivetti", load_olivetti, "Olivetti faces, 400 of 64 x 64, 40 people")
DATASETS.register("celeba", load_celeba, "CelebA's aligned faces + 40 attributes, 64 x 64 x 3")
DATASETS.register(
    "dsprites", load_dsprites, "dSprites, 737,280 of 64 x 64 over 5 factors (re-rendered)"
)

# Data sets at a path: ``--dataset SCHEME:PATH``.
SOURCES: Registry = Registry("data source")
SOURCES.register("folder", load_folder, "a folder of images (class subfolders: labels)")
SOURCES.register("array", load_array, "a .npy / .npz file of images (and labels)")
SOURCES.register("celeba", load_celeba_folder, "a folder in CelebA's layout")


def load(
    name: str, data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> Dataset:
    """Load a data set by name (one of ``DATASETS``) or at a path (``folder:PATH``,
    ``array:PATH``, ``celeba:PATH``); with ``image_size``, images are S x S (cropped to the
    centre square and resized)."""
    scheme, colon, path = name.partition(":")
    if scheme in SOURCES.names() and colon:
        if not path:
            raise DataError(f"--dataset {scheme}:PATH needs a path after the colon")
        loader = functools.partial(SOURCES.choose(scheme), path)
    else:
        loader = functools.partial(DATASETS.choose(name), data_dir)
    dataset = construct(loader, image_size=image_size)
    return dataset if image_size is None else resize(dataset, image_size)


# --- Binarization and batches ------------------------------------------------------------------


def binarize_once(x: Tensor, seed: int, chunk: int = 10000) -> Tensor:
    """One Bernoulli draw of grey levels with its own seeded generator (same result each call),
    stored as ``x`` is: uint8 0/255 for uint8 levels, float 0/1 for float ones."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    parts = [torch.bernoulli(as_input(xb), generator=gen) for xb in x.split(chunk)]
    out = torch.cat(parts).reshape(x.shape)
    return out.mul_(255).to(torch.uint8) if x.dtype == torch.uint8 else out


def prepare(data: Dataset, binarize: str, seed: int = 0) -> Dataset:
    """Apply a binarization scheme to a data set of grey levels.

    - ``dynamic``: training batches are re-drawn from the grey levels each time
      (see :func:`batches`); the test set is binarized once, with ``seed``.
    - ``fixed``: train and test binarized once, with ``seed``.
    - ``none``: grey levels (pair with a likelihood over [0, 1], e.g. ContinuousBernoulli).
    """
    one_of(binarize, BINARIZATIONS, "binarization")
    if binarize == "none" or data.is_binary:
        return data
    valid = None if data.valid is None else binarize_once(data.valid, seed + 2)
    test = binarize_once(data.test, seed + 1)
    train = binarize_once(data.train, seed) if binarize == "fixed" else data.train
    return replace(data, train=train, test=test, valid=valid)


def batches(
    x: TrainingData,
    batch_size: int,
    dynamic: bool = False,
    device: torch.device | str | None = None,
    permutation_seed: int | None = None,
) -> Iterator:
    """Batches of ``x`` from a fresh permutation, on ``device`` (default: where ``x`` is);
    with ``dynamic``, each batch is a new Bernoulli draw of its grey levels. The permutation
    comes from the global CPU torch RNG (saved in checkpoints), so data on the device and data
    streamed from a memory-mapped file give the same batches. In a distributed run every rank
    draws the permutation from ``permutation_seed`` and takes its shard of each global batch
    of ``batch_size`` x ranks data (:func:`pyro_vae.distributed.shard_rows`).

    ``x`` may be one tensor (batches are tensors), a tuple of tensors with one row per datum,
    such as ``(x, one_hot_labels)`` (batches are tuples, rows kept together, only the first
    binarized), or a :class:`SemiSupervised` set (it makes its own batches)."""
    if isinstance(x, SemiSupervised):
        yield from x.batches(batch_size, dynamic, device)
        return
    parts = x if isinstance(x, tuple) else (x,)
    device = parts[0].device if device is None else torch.device(device)
    if distributed.world().size > 1:
        # every rank draws the same permutation from the shared seed and takes its shard
        if permutation_seed is None:
            raise ValueError("a distributed run's batches need a permutation_seed")
        gen = torch.Generator().manual_seed(permutation_seed)
        index = distributed.shard_rows(torch.randperm(parts[0].shape[0], generator=gen), batch_size)
    else:
        index = iter(torch.randperm(parts[0].shape[0]).split(batch_size))
    for idx in index:
        rows = [p[idx.to(p.device)].to(device, non_blocking=True) for p in parts]
        first = as_input(rows[0])
        first = torch.bernoulli(first) if dynamic else first
        yield (first, *rows[1:]) if isinstance(x, tuple) else first


def num_data(x: TrainingData, batch_size: int | None = None) -> int:
    """How many data one epoch of :func:`batches` covers (over all ranks of a distributed
    run, which leave out a last global batch smaller than the number of ranks)."""
    if isinstance(x, SemiSupervised):
        return x.num_data
    n = (x[0] if isinstance(x, tuple) else x).shape[0]
    if batch_size is not None and distributed.world().size > 1:
        return distributed.num_sharded_data(n, batch_size)
    return n


def num_batches(x: TrainingData, batch_size: int) -> int:
    """Steps per epoch (of each rank, in a distributed run)."""
    if isinstance(x, SemiSupervised):
        return x.num_batches(batch_size)
    if distributed.world().size > 1:
        return distributed.num_sharded_batches(num_data(x), batch_size)
    return -(-num_data(x) // batch_size)


# --- labels --------------------------------------------------------------------------------


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices (N,) -> float one-hot rows (N, num_classes)."""
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(
            f"labels must be a 1-D integer tensor; got {labels.dtype} {tuple(labels.shape)}"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}; got {int(labels.min())}..{int(labels.max())}"
        )
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def balanced_subset(labels: Tensor, n: int, seed: int) -> Tensor:
    """Indices of ``n`` data, ``n / num_classes`` from each class, chosen at random with
    ``seed`` (its own generator: the choice does not depend on the training RNG)."""
    classes = labels.unique()
    if n % len(classes):
        raise ValueError(
            f"{n} labels cannot be balanced over {len(classes)} classes: use a multiple of "
            f"{len(classes)}"
        )
    per_class = n // len(classes)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes.tolist():
        members = (labels.cpu() == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} data, fewer than {per_class} requested")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values.to(labels.device)


@dataclass(frozen=True)
class SemiSupervised:
    """Training data for semi-supervised learning: labelled pairs and unlabelled images.

    Each epoch visits every unlabelled datum once and every labelled one ``repeats`` times, in
    batches of one kind: unlabelled batches ``(x,)`` and labelled batches ``(x, y)`` (y
    one-hot), the labelled ones spread evenly through the epoch. ``repeats=1`` is the schedule
    of Pyro's ``ss_vae_M2`` example; more repeats give the classifier more supervised steps
    per epoch when labels are few."""

    labelled_x: Tensor
    labelled_y: Tensor
    unlabelled_x: Tensor
    repeats: int = 1

    @property
    def num_data(self) -> int:
        return self.repeats * self.labelled_x.shape[0] + self.unlabelled_x.shape[0]

    def num_batches(self, batch_size: int) -> int:
        n_sup, n_unsup = self.labelled_x.shape[0], self.unlabelled_x.shape[0]
        return self.repeats * -(-n_sup // batch_size) + -(-n_unsup // batch_size)

    def batches(
        self, batch_size: int, dynamic: bool = False, device: torch.device | str | None = None
    ) -> Iterator[tuple[Tensor, ...]]:
        labelled = (self.labelled_x, self.labelled_y)
        sup = itertools.chain.from_iterable(
            batches(labelled, batch_size, dynamic, device) for _ in range(self.repeats)
        )
        unsup = batches((self.unlabelled_x,), batch_size, dynamic, device)
        n_sup = self.repeats * -(-self.labelled_x.shape[0] // batch_size)
        n_unsup = -(-self.unlabelled_x.shape[0] // batch_size)
        # merge by position in the epoch: labelled batch j at (j + 1/2) / n_sup, and so on
        order = sorted(
            [((j + 0.5) / n_sup, 0) for j in range(n_sup)]
            + [((i + 0.5) / max(n_unsup, 1), 1) for i in range(n_unsup)]
        )
        for _, kind in order:
            yield next(sup) if kind == 0 else next(unsup)

    def to(self, device: torch.device | str) -> SemiSupervised:
        moved = (t.to(device) for t in (self.labelled_x, self.labelled_y, self.unlabelled_x))
        return SemiSupervised(*moved, repeats=self.repeats)


TrainingData = Tensor | tuple[Tensor, ...] | SemiSupervised
