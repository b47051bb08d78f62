"""pyro-vae: variational autoencoders as explicit Pyro models and guides.

``pyro_vae.fit(data, **options)`` trains on data given from Python and returns a
:class:`~pyro_vae.run.Run`; ``pyro_vae.load(folder)`` restores a saved run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import guides, likelihoods, models, priors

if TYPE_CHECKING:
    from .run import Run

__version__ = "0.1.0"
__all__ = ["__version__", "fit", "guides", "likelihoods", "load", "models", "priors"]


def fit(data: Any, labels: Any = None, **options: Any) -> Run:
    """Train on data given from Python: see :func:`pyro_vae.api.fit`."""
    from .api import fit as _fit  # the run layer: imported when first used

    return _fit(data, labels, **options)


def load(path: Any, device: str = "auto", **kwargs: Any) -> Run:
    """Restore a run folder or checkpoint: see :func:`pyro_vae.api.load`."""
    from .api import load as _load

    return _load(path, device, **kwargs)
