"""parax 0.4's module path for `ParameterGroup` (``from parax.parameter_group import ...``)."""

from .group import ParameterGroup

__all__ = ["ParameterGroup"]
