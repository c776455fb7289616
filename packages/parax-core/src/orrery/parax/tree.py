"""Splitting pytrees into trainable and static halves."""

from __future__ import annotations

from typing import TypeGuard, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ._util import fast_set
from .parameter import Parameter

__all__ = ["combine", "is_parameter", "partition"]

T = TypeVar("T")


def is_parameter(x: object) -> TypeGuard[Parameter]:
    """True for `Parameter` instances (use as ``is_leaf`` in tree utilities).

    Args:
        x: any object.

    Returns:
        Whether `x` is a `Parameter`.
    """
    return isinstance(x, Parameter)


def _none_like(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda _: None, tree)


def _is_float_array(x: object) -> bool:
    return isinstance(x, jax.Array | jnp.ndarray) and jnp.issubdtype(x.dtype, jnp.inexact)


def partition(
    pytree: T,
    include_fixed: bool = False,
    include_arrays: bool = False,
    param_objects: bool = False,
) -> tuple[T, T]:
    """Split a pytree into ``(dynamic, static)`` halves, like `equinox.partition`.

    By default only the latent arrays of free `Parameter` objects are dynamic;
    everything else (fixed parameters, metadata, plain arrays) is static.
    Recombine with `combine` (or `equinox.combine`).

    Args:
        pytree: any pytree containing parameters.
        include_fixed: also make fixed parameters' latent arrays dynamic.
        include_arrays: also make floating-point arrays outside parameters dynamic.
        param_objects: route whole parameter objects (metadata arrays included) to
            the dynamic half.

    Returns:
        ``(dynamic, static)``, each with ``None`` where the other holds a leaf.
    """
    leaves, treedef = jax.tree_util.tree_flatten(pytree, is_leaf=is_parameter)
    dyn, sta = [], []
    for leaf in leaves:
        if isinstance(leaf, Parameter):
            if leaf.fixed and not include_fixed:
                dyn.append(None)
                sta.append(leaf)
            elif param_objects:
                dyn.append(leaf)
                sta.append(None)
            else:
                dyn.append(fast_set(leaf, metadata=_none_like(leaf.metadata)))
                sta.append(fast_set(leaf, latent_value=None))
        elif include_arrays and _is_float_array(leaf):
            dyn.append(leaf)
            sta.append(None)
        else:
            dyn.append(None)
            sta.append(leaf)
    return treedef.unflatten(dyn), treedef.unflatten(sta)


def combine(*trees: PyTree) -> PyTree:
    """Inverse of `partition` (same as `equinox.combine`).

    Args:
        *trees: the halves returned by `partition` (or more trees of the same structure).

    Returns:
        The recombined pytree.

    Example:
        >>> from orrery.parax import Parameter
        >>> dyn, static = partition({"a": Parameter(1.0), "b": Parameter(2.0, fixed=True)})
        >>> float(combine(dyn, static)["a"].value)
        1.0
    """
    return eqx.combine(*trees)
