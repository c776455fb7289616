"""Small private helpers shared across `orrery.parax`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def as_float_array(value: Any) -> jax.Array:
    """`jnp.asarray`, promoting bools and integers to the default float dtype."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        return arr.astype(jnp.result_type(float))
    if getattr(arr, "weak_type", False):
        # Python floats give weakly typed arrays; store a definite dtype instead.
        return jnp.array(arr, dtype=arr.dtype, copy=False)
    return arr


def static_event_shape(dist: Any) -> tuple[int, ...] | None:
    """A distribution's event shape, or None when it has none to compare (or no distribution)."""
    if dist is None:
        return None
    try:
        return tuple(dist.event_shape)
    except (AttributeError, TypeError, NotImplementedError):
        return None


def is_concrete(x: Any) -> bool:
    """True when `x` holds actual numbers (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, Tracer)


def fast_set(obj: Any, **changes: Any) -> Any:
    """Copy an equinox module with some fields replaced, skipping `__init__` and converters."""
    new = object.__new__(type(obj))
    d = object.__getattribute__(new, "__dict__")
    d.update(object.__getattribute__(obj, "__dict__"))
    d.update(changes)
    return new


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)


def plain_method_names(cls: type) -> frozenset[str]:
    """Names of the plain functions defined on `cls` (not dunder)."""
    return frozenset(
        k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")
    ) | frozenset(
        k for k, v in vars(cls).items() if isinstance(v, (classmethod, staticmethod, property))
    )


def fast_getattribute(self: Any, name: str) -> Any:
    """`__getattribute__` for equinox modules: fields straight from `__dict__`.

    equinox's own hook wraps bound methods in pytree `BoundMethod`s and costs a few
    microseconds per access, which adds up over thousands of parameters.
    """
    d = object.__getattribute__(self, "__dict__")
    if name in d:
        return d[name]
    if name.startswith("__"):
        return object.__getattribute__(self, name)
    return _EQX_GETATTRIBUTE(self, name)


def _eqx_getattribute():
    import equinox as eqx

    return eqx.Module.__getattribute__


_EQX_GETATTRIBUTE = _eqx_getattribute()
