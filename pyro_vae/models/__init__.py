"""Decoders written as Pyro models: ``model(x)`` is p(z) p(x|z) with x observed."""

from .classifier import Classifier, NoLatents
from .conditional import CVAEModel, M2Model
from .vae import VAEModel

__all__ = ["CVAEModel", "Classifier", "M2Model", "NoLatents", "VAEModel"]
