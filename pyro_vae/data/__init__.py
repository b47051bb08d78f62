"""The data layer: image data sets as whole tensors, binarization, and batches.

- :mod:`~pyro_vae.data.dataset`: the :class:`Dataset` container, subsets, seeded splits;
- :mod:`~pyro_vae.data.sources`: the ``DATASETS`` and ``SOURCES`` registries, the search of
  the data folders, :func:`load`;
- one module per source, each registering itself: ``idx`` (MNIST, Fashion-MNIST), ``amat``
  (fixed binarized MNIST), ``faces`` (Frey, Olivetti), ``files`` (``folder:``, ``array:``),
  ``celeba``, ``dsprites``;
- :mod:`~pyro_vae.data.batching`: binarization, batches, the semi-supervised schedule (the only
  data module that knows about torchrun ranks);
- :mod:`~pyro_vae.data.imagefiles`: image files and arrays decoded to uint8, the decoded cache.

Everything is also reachable as ``pyro_vae.data.X``. A new source is one module and one import
line below.
"""

from ..inputs import as_input, chw
from . import idx  # noqa: F401  (first: MNIST, the default, heads the list of names)

# isort: split
from . import amat, celeba, dsprites, faces, files  # noqa: F401  (each registers itself)
from .amat import load_binarized_mnist, read_amat
from .batching import (
    BINARIZATIONS,
    SemiSupervised,
    TrainingData,
    batches,
    binarize_once,
    collect,
    num_batches,
    num_data,
    prepare,
)
from .cache import stream
from .celeba import load_celeba, load_celeba_folder
from .dataset import (
    TEST_FRACTION,
    Dataset,
    attribute,
    balanced_subset,
    labelled,
    one_hot,
    resize,
    split,
    spread_subset,
    to_images,
)
from .dsprites import load_dsprites
from .faces import load_frey_faces, load_olivetti
from .files import Inputs, load_array, load_folder, read_inputs
from .idx import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST,
    MNIST,
    PACKAGED_MNIST,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from .imagefiles import DataError
from .sources import (
    CACHE_DIR,
    DATASETS,
    ENV_VAR,
    IN_MEMORY,
    SOURCES,
    load,
    locate,
    path_spec,
    resolve_spec,
    short_name,
)

__all__ = [
    "BINARIZATIONS",
    "CACHE_DIR",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "ENV_VAR",
    "FASHION_MNIST",
    "IN_MEMORY",
    "MNIST",
    "PACKAGED_MNIST",
    "SOURCES",
    "TEST_FRACTION",
    "DataError",
    "Dataset",
    "Inputs",
    "SemiSupervised",
    "TrainingData",
    "as_input",
    "attribute",
    "balanced_subset",
    "batches",
    "binarize_once",
    "chw",
    "collect",
    "labelled",
    "load",
    "load_array",
    "load_binarized_mnist",
    "load_celeba",
    "load_celeba_folder",
    "load_dsprites",
    "load_fashion_mnist",
    "load_folder",
    "load_frey_faces",
    "load_mnist",
    "load_olivetti",
    "locate",
    "num_batches",
    "num_data",
    "one_hot",
    "path_spec",
    "prepare",
    "read_amat",
    "read_idx",
    "read_inputs",
    "resize",
    "resolve_spec",
    "short_name",
    "split",
    "spread_subset",
    "stream",
    "to_images",
]
