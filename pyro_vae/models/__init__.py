"""Decoders written as Pyro models: ``model(x)`` is p(z) p(x|z) with x observed."""

from .vae import VAEModel

__all__ = ["VAEModel"]
