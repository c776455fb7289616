"""parax 0.4's module path for `ParameterMetadata` (``parax.parameter_metadata``)."""

from .metadata import ParameterMetadata

__all__ = ["ParameterMetadata"]
