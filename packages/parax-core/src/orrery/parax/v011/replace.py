"""`tree_replace`: `dataclasses.replace` over the dataclass nodes of a pytree (parax 0.11)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import PyTree

from orrery.interface import ConfigTypeError

__all__ = ["tree_replace"]


def tree_replace(
    pytree: PyTree,
    *,
    is_leaf: Callable[[PyTree], bool] | None = dataclasses.is_dataclass,
    **kwargs: PyTree,
) -> PyTree:
    """Replace fields of the nodes `is_leaf` picks, broadcasting each keyword over them.

    ``tree_replace(model, is_leaf=is_variable, raw_value=new_raws)`` takes `new_raws` as
    a pytree prefix of the picked nodes: one value for all, or one per node.

    Raises:
        ConfigTypeError: a picked node that is not a dataclass (also a `TypeError`).
    """
    if not kwargs:
        return pytree
    picked = jax.tree.map(
        lambda x: True if is_leaf is None or is_leaf(x) else None, pytree, is_leaf=is_leaf
    )
    names = list(kwargs)
    trees = [jax.tree.broadcast(v, picked, is_leaf=is_leaf) for v in kwargs.values()]

    def replace(x: Any, *values: Any) -> Any:
        if is_leaf is not None and not is_leaf(x):
            return x
        if not dataclasses.is_dataclass(x) or isinstance(x, type):
            raise ConfigTypeError(
                f"tree_replace: Expected a dataclass leaf, got {type(x).__name__}; check `is_leaf`"
            )
        return dataclasses.replace(x, **dict(zip(names, values, strict=True)))

    return jax.tree.map(replace, pytree, *trees, is_leaf=is_leaf)
