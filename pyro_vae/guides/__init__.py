"""Amortized encoders written as Pyro guides: ``guide(x)`` samples z ~ q(z|x)."""

from .delta import DeltaGuide
from .fullcov import FullCovGuide
from .iaf import IAFGuide
from .normal import NormalGuide

__all__ = ["DeltaGuide", "FullCovGuide", "IAFGuide", "NormalGuide"]
