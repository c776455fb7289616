"""Element-wise views of vector parameters: flat names and scalar parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import jax
import jax.numpy as jnp

from orrery.interface import ShapeError

from ._util import fast_set

__all__ = ["flat_element", "flat_names_of"]


@overload
def flat_names_of(name: str, size: int, separator: str = "_") -> list[str]: ...
@overload
def flat_names_of(name: Any, size: int, separator: str = "_") -> list[str | None]: ...
def flat_names_of(name: Any, size: int, separator: str = "_") -> Sequence[str | None]:
    """Per-element names of a parameter of `size` elements."""
    if isinstance(name, (tuple, list)):
        if len(name) != size:
            raise ShapeError(f"name: got {len(name)} names for a parameter of size {size}")
        return list(name)
    if name is None:
        return [None] * size
    return [f"{name}{separator}{i}" for i in range(size)]


def _slice_tree(tree: Any, shape: tuple[int, ...], i: int) -> Any:
    """Take element `i` of every array leaf shaped like the parameter (others are shared)."""
    if tree is None:
        return None

    def take(leaf):
        if hasattr(leaf, "shape") and tuple(leaf.shape) == shape:
            return jnp.reshape(leaf, (-1,))[i]
        return leaf

    return jax.tree_util.tree_map(take, tree)


def flat_element(p: Any, i: int, name: str | None) -> Any:
    """Scalar parameter for flat element `i` of the parameter `p`."""
    meta = p.metadata
    shape = p.shape
    bounds = None if meta.bounds is None else jnp.reshape(meta.bounds, (-1, 2))[i]
    new_meta = fast_set(
        meta,
        name=name,
        distribution=_slice_tree(meta.distribution, shape, i),
        transform=_slice_tree(meta.transform, shape, i),
        bounds=bounds,
    )
    return fast_set(p, latent_value=jnp.reshape(p.latent_value, (-1,))[i], metadata=new_meta)
