"""pyro-vae: variational autoencoders as explicit Pyro models and guides."""

from . import guides, likelihoods, models, priors

__version__ = "0.1.0"
__all__ = ["__version__", "guides", "likelihoods", "models", "priors"]
