"""Constant (fixed or frozen) nodes, as in parax 0.11's `parax.constants`."""

from ._base import AbstractConstant, as_free, is_constant

__all__ = ["AbstractConstant", "as_free", "is_constant"]
