"""jopt: a JAX research toolkit for optimizing and tuning models."""

__version__ = "0.1.0"
