"""Amortized encoders written as Pyro guides: ``guide(x)`` samples z ~ q(z|x)."""

from .normal import NormalGuide

__all__ = ["NormalGuide"]
