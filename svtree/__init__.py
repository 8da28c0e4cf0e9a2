"""svtree: a service tree runner for containers."""

__version__ = "0.1.0"
