"""Small private helpers shared across `orrery.parax`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_float_array(value: Any) -> jax.Array:
    """`jnp.asarray`, promoting bools and integers to the default float dtype."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        return arr.astype(jnp.result_type(float))
    if getattr(arr, "weak_type", False):
        # Python floats give weakly typed arrays; store a definite dtype instead.
        return jnp.array(arr, dtype=arr.dtype, copy=False)
    return arr


def is_concrete(x: Any) -> bool:
    """True when `x` holds actual numbers (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def fast_set(obj: Any, **changes: Any) -> Any:
    """Copy an equinox module with some fields replaced, skipping `__init__` and converters."""
    new = object.__new__(type(obj))
    for k, v in obj.__dict__.items():
        object.__setattr__(new, k, v)
    for k, v in changes.items():
        object.__setattr__(new, k, v)
    return new


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)
