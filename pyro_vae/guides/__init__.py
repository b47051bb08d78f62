"""Amortized encoders written as Pyro guides: ``guide(x)`` samples z ~ q(z|x)."""

from .conditional import ConditionalNormalGuide, M2Guide
from .delta import DeltaGuide
from .fullcov import FullCovGuide
from .iaf import IAFGuide
from .normal import NormalGuide

__all__ = [
    "ConditionalNormalGuide",
    "DeltaGuide",
    "FullCovGuide",
    "IAFGuide",
    "M2Guide",
    "NormalGuide",
]
