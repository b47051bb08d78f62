"""IDX files: MNIST and Fashion-MNIST (60,000 train / 10,000 test, 28 x 28 grey levels).

Where they are looked for (first hit wins):

1. ``data_dir`` (``--data-dir``), then ``$PYRO_VAE_DATA``; in each, the folder itself,
   ``<folder>/<name>`` and torchvision's ``<folder>/<TorchvisionName>/raw``;
2. MNIST: the four IDX files shipped with the package (``pyro_vae/mnist``, CC BY-SA 3.0), so
   the default data set is there on every machine, with no download;
3. Fashion-MNIST: torchvision's download into ``data_dir`` (or ``~/.cache/pyro-vae``), when
   torchvision is installed and importable and the network is there, then Debian's
   ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, to_images
from .imagefiles import DataError
from .sources import CACHE_DIR, DATASETS, ENV_VAR, find_file, search

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped where they are gzip's (whatever the file's name: an
    uncompressed file named ``.gz`` is read as it is)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path} could not be read ({e}): the file is truncated or corrupt; delete it and "
            "fetch it again"
        ) from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes, checking magic and size.

    The magic number is 0x0000 0x08 (unsigned bytes) and the number of dimensions: 2049 for
    MNIST's labels, 2051 for its images."""
    raw = read_bytes(path)
    if not raw:
        raise DataError(f"{path} is empty (0 bytes, after gunzip): delete it and fetch it again")
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    ndim = magic - 0x0800
    if not 1 <= ndim <= 4:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (magic number {magic}, expected 2051 "
            f"for images or 2049 for labels; it starts {raw[:8]!r}); replace it with the "
            "original file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} holds {len(raw)} bytes, less than its {header}-byte header: the file is "
            "truncated; delete it and fetch it again"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
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


CLASSES = 10  # MNIST's digits, Fashion-MNIST's kinds of clothing
MNIST = IdxSet("mnist", "MNIST")
FASHION_MNIST = IdxSet("fashion-mnist", "FashionMNIST")


def _load_idx_folder(spec: IdxSet, folder: Path) -> Dataset | None:
    """The data set from ``folder`` if all four files are there, else None."""
    paths = [find_file(folder, stem) for split in ("train", "test") for stem in spec.files(split)]
    if any(p is None for p in paths):
        return None
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    for (image_file, label_file), images, labels, n, split in (
        (paths[:2], train_x, train_y, spec.n_train, "train"),
        (paths[2:], test_x, test_y, spec.n_test, "test"),
    ):
        for file, array, want, what in (
            (image_file, images, (n, 28, 28), "images"),
            (label_file, labels, (n,), "labels"),
        ):
            if array.shape != want:
                raise DataError(
                    f"{file}: {spec.name}'s {split} split has {what} {array.shape}, expected "
                    f"{want}: replace it with the original file"
                )
        if labels.size and labels.max() >= CLASSES:
            raise DataError(
                f"{label_file} holds labels up to {labels.max()}; {spec.name}'s are "
                f"0..{CLASSES - 1}: replace it with the original file"
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
    found, looked = search(data_dir, spec.subfolders(), lambda f: _load_idx_folder(spec, f))
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
PACKAGED_MNIST = Path(__file__).parents[1] / "mnist"


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Full MNIST (60,000 train / 10,000 test, grey levels): from ``data_dir`` or
    ``$PYRO_VAE_DATA`` when given, else the copy shipped with the package. A ``data_dir``
    without the files is an error (``$PYRO_VAE_DATA`` without them: a note, and the copy)."""
    if data_dir or os.environ.get(ENV_VAR):
        found, looked = search(data_dir, MNIST.subfolders(), lambda f: _load_idx_folder(MNIST, f))
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


DATASETS.register("mnist", load_mnist, "MNIST, 60,000 / 10,000 (default)")
DATASETS.register("fashion-mnist", load_fashion_mnist, "Fashion-MNIST, 60,000 / 10,000")
