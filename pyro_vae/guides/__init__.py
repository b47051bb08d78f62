"""Amortized encoders written as Pyro guides: ``guide(x)`` samples z ~ q(z|x).

Every guide has ``point(x)``, its documented point summary of the latent code (what
``pyro-vae encode`` writes): the posterior mean where it has a closed form.

``GUIDES`` names the guides of the one-latent VAE for configs and the CLI; a user's guide class
is named by import path (``--guide mypkg.guides:MyGuide``). The label-aware and hierarchical
kinds bring their own guides (see ``pyro_vae.kinds``).
"""

from .base import GUIDES
from .conditional import ConditionalNormalGuide, M2Guide
from .delta import DeltaGuide
from .fullcov import FullCovGuide
from .hierarchical import BottomUpGuide, LadderGuide
from .iaf import IAFGuide
from .normal import NormalGuide
from .spherical import SphericalGuide

GUIDES.register("normal", NormalGuide, "diagonal Normal (default)")
GUIDES.register("fullcov", FullCovGuide, "full-covariance Normal, predicted Cholesky factor")
GUIDES.register("iaf", IAFGuide, "inverse autoregressive flows on a diagonal Normal")
GUIDES.register("delta", DeltaGuide, "a point estimate (amortized MAP; with a flat prior: an AE)")
GUIDES.register(
    "spherical", SphericalGuide, "power spherical on the unit sphere (with --prior spherical)"
)

from .flow import FlowGuide  # noqa: E402  (registers itself, after the four above)

__all__ = [
    "GUIDES",
    "BottomUpGuide",
    "ConditionalNormalGuide",
    "DeltaGuide",
    "FlowGuide",
    "FullCovGuide",
    "IAFGuide",
    "LadderGuide",
    "M2Guide",
    "NormalGuide",
    "SphericalGuide",
]
