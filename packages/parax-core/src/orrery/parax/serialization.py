"""parax 0.4's module path for `save` and `load` (``from parax.serialization import ...``)."""

from .io import load, save

__all__ = ["load", "save"]
