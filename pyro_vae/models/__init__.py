"""Decoders written as Pyro models: ``model(x)`` is p(z) p(x|z) with x observed."""

from .classifier import Classifier, NoLatents
from .conditional import CVAEModel, M2Model
from .hierarchical import HierarchicalModel
from .vae import VAEModel

__all__ = ["CVAEModel", "Classifier", "HierarchicalModel", "M2Model", "NoLatents", "VAEModel"]
