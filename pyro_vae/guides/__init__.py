"""Amortized encoders written as Pyro guides: ``guide(x)`` samples z ~ q(z|x)."""

from .delta import DeltaGuide
from .normal import NormalGuide

__all__ = ["DeltaGuide", "NormalGuide"]
