"""Metadata-carrying nodes, as in parax 0.11's `parax.annotation`."""

from ._base import AbstractAnnotated, is_annotated

__all__ = ["AbstractAnnotated", "is_annotated"]
