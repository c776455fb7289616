"""Argument checks and conversions shared by the public entry points."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.core import Tracer
from jaxtyping import ArrayLike, PRNGKeyArray, PyTree

from orrery.interface import (
    ConfigError,
    SeedLike,
    ShapeError,
    ValueDomainError,
    as_int_seed,
    check_choice,
    check_finite,
    check_nonnegative_float,
    check_positive_float,
)

NONFINITE_MODES = ("raise", "skip", "ignore")


def as_key(seed: PRNGKeyArray | SeedLike, name: str = "seed") -> PRNGKeyArray:
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
        return jax.random.PRNGKey(as_int_seed(seed))
    except ConfigError as err:
        raise ConfigError(str(err).replace("seed:", f"{name}:", 1)) from None


def check_on_nonfinite(value: object) -> str:
    return check_choice(value, NONFINITE_MODES, "on_nonfinite")


def check_member_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"ensemble_size: expected an integer >= 1, got {value!r}")
    return int(value)


def check_data(x: PyTree[ArrayLike], y: ArrayLike) -> tuple[PyTree[jax.Array], jax.Array]:
    """Convert ``x`` (an array or a pytree of arrays) and ``y`` and check their lengths match."""
    y = _as_array(y, "y")
    if y.ndim < 1:
        raise ShapeError(
            f"y: expected at least one dimension (one row per data point), got shape {y.shape}"
        )
    n = y.shape[0]
    if n < 1:
        raise ShapeError("y: expected at least one data point, got 0 rows")
    x = jax.tree_util.tree_map_with_path(
        lambda path, leaf: _as_array(leaf, f"x{jax.tree_util.keystr(path)}"), x
    )
    leaves = jax.tree.leaves_with_path(x)
    if not leaves:
        raise ShapeError("x: expected an array (or a pytree of arrays), got an empty tree")
    for path, leaf in leaves:
        if leaf.ndim < 1 or leaf.shape[0] != n:
            raise ShapeError(
                f"x{jax.tree_util.keystr(path)}: expected {n} rows (one per row of y), got an "
                f"array of shape {leaf.shape}; x and y must have the same length"
            )
    check_all_finite(x, "x")
    check_all_finite(y, "y")
    return x, y


def _as_array(value: ArrayLike, name: str) -> jax.Array:
    if isinstance(value, jax.Array):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        arr = check_finite(arr, name)  # converts numeric strings, names what is not a number
    try:
        return jnp.asarray(arr)
    except TypeError as err:
        raise ValueDomainError(f"{name}: expected a numeric array, got dtype {arr.dtype}") from err


def check_all_finite(tree: PyTree, name: str) -> None:
    """Raise `ValueDomainError` naming the leaf when a float leaf of `tree` holds NaN or inf.

    Non-array leaves (None, Python flags) and integer arrays are left alone. The
    test runs where the data lives; only a failing leaf is copied to the host
    for the message.
    """
    for path, leaf in jax.tree.leaves_with_path(tree):
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        if isinstance(leaf, Tracer):
            continue
        if not bool(jnp.all(jnp.isfinite(leaf))):
            check_finite(np.asarray(leaf), f"{name}{jax.tree_util.keystr(path)}")


def concrete_float(value: object) -> float | None:
    """`value` as a Python float when it is a concrete real scalar, else None (traced, arrays)."""
    if isinstance(value, Tracer):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == ():
        if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
            return float(value)
    return None


def check_weight(value: object, name: str) -> float:
    """A finite, non-negative real number (a Python, NumPy or 0-d array scalar) as a float.

    A setting, so a bad value is a `ConfigError` (`orrery.interface.errors`' table).
    """
    return check_nonnegative_float(value, name)


def check_learning_rate(value: float | optax.Schedule) -> float | optax.Schedule:
    """A finite positive learning rate, or a callable schedule (returned unchanged).

    A setting, so a bad value is a `ConfigError` (`orrery.interface.errors`' table).
    """
    if callable(value):
        return value
    if concrete_float(value) is None:
        raise ConfigError(f"learning_rate: expected a positive number or a schedule, got {value!r}")
    return check_positive_float(value, "learning_rate")
