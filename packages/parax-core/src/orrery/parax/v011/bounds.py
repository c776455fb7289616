"""Bounded nodes and bound extraction, as parax 0.11's `parax.bounds`."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from orrery.interface import ConfigError

from ._base import AbstractBounded, is_bounded, is_constant, is_unwrappable

__all__ = [
    "AbstractBounded",
    "is_bounded",
    "is_dynamic",
    "is_leaf",
    "tree_bounds",
    "tree_lower",
    "tree_upper",
]


def _side(tree: PyTree, index: int, fill: float, name: str) -> PyTree:
    def get(path: Any, x: Any) -> Any:
        if is_bounded(x):
            return x.bounds[index]
        if eqx.is_inexact_array(x):
            return jnp.full_like(x, fill)
        raise ConfigError(
            f"{name}: the leaf at {jax.tree_util.keystr(path)} ({type(x).__name__}) is "
            "neither bounded nor an inexact array; mark it static or filter it out first"
        )

    return jax.tree.map_with_path(get, tree, is_leaf=is_bounded)


def tree_lower(tree: PyTree) -> PyTree:
    """Lower bounds, shaped like `tree`: a plain array's is -inf.

    Raises:
        ConfigError: a leaf is neither bounded nor an inexact array (also a `ValueError`).
    """
    return _side(tree, 0, -jnp.inf, "tree_lower")


def tree_upper(tree: PyTree) -> PyTree:
    """Upper bounds, shaped like `tree`: a plain array's is +inf."""
    return _side(tree, 1, jnp.inf, "tree_upper")


def tree_bounds(tree: PyTree) -> tuple[PyTree, PyTree]:
    """``(tree_lower(tree), tree_upper(tree))``: what a bounded optimiser takes."""
    return tree_lower(tree), tree_upper(tree)


def is_leaf(x: object) -> bool:
    """Stop points for bounded partitioning: unwrappable bounded nodes and constants."""
    return (is_bounded(x) and is_unwrappable(x)) or is_constant(x)


def is_dynamic(x: object) -> bool:
    """Trainable under bounded inference: not constant, and a bounded node or array."""
    if is_constant(x):
        return False
    return (is_bounded(x) and is_unwrappable(x)) or eqx.is_inexact_array(x)
