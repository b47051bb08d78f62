"""Model kinds: each module declares one kind (build, data view, hooks, numbers, figures).

Adding a kind is one module here with a ``@register``-ed :class:`ModelKind` subclass, its
tests and one README line; a kind outside this package is named by import path
(``--model mypkg.kinds:MyKind``) or through the ``pyro_vae.kinds`` entry point group.
"""

from . import cvae, hvae, jointvae, m2, vae, vqvae
from .base import (
    KINDS,
    ModelKind,
    RunView,
    active_units,
    build,
    build_in_memory,
    kind_of,
    register,
)

__all__ = [
    "KINDS",
    "ModelKind",
    "RunView",
    "active_units",
    "build",
    "build_in_memory",
    "cvae",
    "hvae",
    "jointvae",
    "kind_of",
    "m2",
    "register",
    "vae",
    "vqvae",
]
