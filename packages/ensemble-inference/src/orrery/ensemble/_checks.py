"""Argument checks and conversions shared by the public entry points."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ConfigError, ShapeError, as_int_seed, check_choice

NONFINITE_MODES = ("raise", "skip", "ignore")


def as_key(seed: Any, name: str = "seed") -> jax.Array:
    """A JAX PRNG key from a key (raw or typed) or an ``int | np.random.Generator | None`` seed."""
    if isinstance(seed, jax.Array) or (isinstance(seed, np.ndarray) and seed.dtype == np.uint32):
        arr = jnp.asarray(seed)
        if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
            if arr.ndim != 0:
                raise ShapeError(
                    f"{name}: expected a single PRNG key, got a key array of shape {arr.shape}"
                )
            return arr
        if arr.dtype != jnp.uint32 or arr.shape != (2,):
            raise ConfigError(
                f"{name}: expected a PRNG key (jax.random.key / PRNGKey) or an int seed, "
                f"got an array of dtype {arr.dtype} and shape {arr.shape}"
            )
        return arr
    try:
        plain: Any = seed
        return jax.random.PRNGKey(as_int_seed(plain))
    except ConfigError as err:
        raise ConfigError(str(err).replace("seed:", f"{name}:", 1)) from None


def check_on_nonfinite(value: Any) -> str:
    return check_choice(value, NONFINITE_MODES, "on_nonfinite")


def check_member_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"ensemble_size: expected an integer >= 1, got {value!r}")
    return int(value)


def check_data(x: Any, y: Any) -> tuple[Any, jax.Array]:
    """Convert ``x`` (an array or a pytree of arrays) and ``y`` and check their lengths match."""
    y = jnp.asarray(y)
    if y.ndim < 1:
        raise ShapeError(
            f"y: expected at least one dimension (one row per data point), got shape {y.shape}"
        )
    n = y.shape[0]
    if n < 1:
        raise ShapeError("y: expected at least one data point, got 0 rows")
    x = jax.tree.map(jnp.asarray, x)
    leaves = jax.tree.leaves(x)
    if not leaves:
        raise ShapeError("x: expected an array (or a pytree of arrays), got an empty tree")
    for leaf in leaves:
        if leaf.ndim < 1 or leaf.shape[0] != n:
            raise ShapeError(
                f"x: expected {n} rows (one per row of y), got an array of shape {leaf.shape}; "
                "x and y must have the same length"
            )
    return x, y
