"""Private helpers for `orrery.parax.operator` and `orrery.parax.op`.

Leafwise combination of pytree outputs, hashable ("frozen") forms of index
and mask values so they can live in static fields, and the wrapping rule for
user callables stored on operators.
"""

from __future__ import annotations

import dataclasses
import operator as _pyop
from collections.abc import Callable
from typing import Any, TypedDict

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from orrery.interface import ShapeError

from ._errors import ConfigTypeError


class BaseFields(TypedDict, total=False):
    """The keywords of the base `Module` an operator node also takes (``name=``)."""

    name: str | None


def _has_jax_array(x: Any) -> bool:
    # JAX arrays and tracers define ``__jax_array__ = None``; only real converters count.
    return not isinstance(x, jax.Array) and callable(getattr(x, "__jax_array__", None))


def is_value_leaf(x: Any) -> bool:
    """Whether ``x`` is a single value (array, scalar or array-like object).

    Objects exposing ``__jax_array__`` (e.g. `orrery.parax.Parameter`) count as
    single values, so an operator result is never split into a parameter's
    internal latent leaves.
    """
    if _has_jax_array(x):
        return True
    return is_pytree_leaf(x)


def is_pytree_leaf(x: Any) -> bool:
    """Whether JAX treats ``x`` as a leaf (not a container, not ``None``)."""
    leaves = jax.tree_util.tree_leaves(x)
    return len(leaves) == 1 and leaves[0] is x


def as_value(x: Any) -> Any:
    """Turn an array-like object exposing ``__jax_array__`` into a JAX array."""
    if _has_jax_array(x):
        return x.__jax_array__()
    return x


def tree_unary(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply ``fn`` to every value leaf of ``tree``."""
    return jax.tree.map(lambda x: fn(as_value(x)), tree, is_leaf=is_value_leaf)


def tree_binary(fn: Callable[[Any, Any], Any], left: Any, right: Any, what: str = "fn") -> Any:
    """Combine two pytrees leafwise, broadcasting a single value over a pytree.

    Args:
        fn: binary function applied to pairs of leaves.
        left, right: pytrees of the same structure, or one single value and one pytree.
        what: name of the operation, used in error messages.

    Returns:
        A pytree with the structure of the non-leaf operand.

    Raises:
        ShapeError: if both operands are pytrees with different structures.
    """
    left_leaf, right_leaf = is_value_leaf(left), is_value_leaf(right)
    if left_leaf and right_leaf:
        return fn(as_value(left), as_value(right))
    if left_leaf:
        lv = as_value(left)
        return jax.tree.map(lambda r: fn(lv, as_value(r)), right, is_leaf=is_value_leaf)
    if right_leaf:
        rv = as_value(right)
        return jax.tree.map(lambda lv: fn(as_value(lv), rv), left, is_leaf=is_value_leaf)
    lstruct = jax.tree.structure(left, is_leaf=is_value_leaf)
    rstruct = jax.tree.structure(right, is_leaf=is_value_leaf)
    if lstruct != rstruct:
        raise ShapeError(
            f"operands of {what!r} must be single values or pytrees of the same structure; "
            f"got left={lstruct} and right={rstruct}"
        )
    return jax.tree.map(
        lambda a, b: fn(as_value(a), as_value(b)), left, right, is_leaf=is_value_leaf
    )


# Named leafwise functions: names (not function objects) are stored on operators so
# that composed graphs are hashable, comparable and serialisable as plain strings.
UNARY_FNS: dict[str, Callable[[Any], Any]] = {
    "neg": _pyop.neg,
    "pos": _pyop.pos,
    "abs": jnp.abs,
    "invert": jnp.logical_not,
}
BINARY_FNS: dict[str, Callable[[Any, Any], Any]] = {
    "add": _pyop.add,
    "sub": _pyop.sub,
    "mul": _pyop.mul,
    "truediv": _pyop.truediv,
    "floordiv": _pyop.floordiv,
    "mod": _pyop.mod,
    "pow": _pyop.pow,
    "matmul": jnp.matmul,
    "lt": _pyop.lt,
    "le": _pyop.le,
    "gt": _pyop.gt,
    "ge": _pyop.ge,
    "eq": jnp.equal,
    "ne": jnp.not_equal,
    "and": jnp.logical_and,
    "or": jnp.logical_or,
    "xor": jnp.logical_xor,
}


class StaticFn(eqx.Module):
    """A plain function held as static data: a pytree with no leaves.

    Used for functions given to operators, so an operator stays a valid argument
    of ``jax.jit`` and compares/hashes by the function it wraps.
    """

    fn: Callable = eqx.field(static=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def wrap_callable(fn: Any, name: str) -> Any:
    """Store a user callable on an operator.

    Pytree callables (equinox modules, operators, bound methods of modules,
    ``jax.tree_util.Partial``) are kept as they are, so arrays inside them stay
    visible to ``jax.grad``. Plain functions would be opaque leaves that
    ``jax.jit`` cannot trace, so they are wrapped in a leafless `StaticFn`.
    """
    if not callable(fn):
        raise ConfigTypeError(f"{name} must be callable, got {type(fn).__name__}: {fn!r}")
    if is_pytree_leaf(fn):
        return StaticFn(fn)
    return fn


def unwrap_callable(fn: Any) -> Any:
    """The user's function, undoing `wrap_callable`."""
    return fn.fn if isinstance(fn, StaticFn) else fn


# ----------------------------------------------------------------------------- frozen values
# Frozen dataclasses: hashable (static pytree data must be; slices are not before
# Python 3.12) and rebuilt field by field by `orrery.parax.load`.


@dataclasses.dataclass(frozen=True)
class FrozenSlice:
    """Hashable stand-in for a ``slice``."""

    start: Any
    stop: Any
    step: Any


@dataclasses.dataclass(frozen=True)
class FrozenArray:
    """Hashable stand-in for a small concrete array (indices or a boolean mask)."""

    data: tuple
    shape: tuple
    dtype: str

    def thaw(self) -> np.ndarray:
        return np.asarray(self.data, dtype=self.dtype).reshape(self.shape)


def freeze_array(x: Any, name: str) -> FrozenArray:
    """Make a concrete (non-traced) array hashable."""
    if isinstance(x, Tracer):
        raise ConfigTypeError(f"{name} must be a concrete array, not a traced value")
    arr = np.asarray(x)
    return FrozenArray(tuple(arr.ravel().tolist()), tuple(arr.shape), str(arr.dtype))


def freeze_index(idx: Any, name: str = "indices") -> Any:
    """Hashable form of an index expression (ints, slices, None, ..., keys, arrays)."""
    if isinstance(idx, tuple):
        return tuple(freeze_index(i, name) for i in idx)
    if isinstance(idx, slice):
        return FrozenSlice(idx.start, idx.stop, idx.step)
    if isinstance(idx, (list, np.ndarray, jax.Array)):
        return freeze_array(idx, name)
    try:
        hash(idx)
    except TypeError:
        raise ConfigTypeError(
            f"{name} must be an int, slice, None, Ellipsis, str key, array or a tuple of "
            f"these; got unhashable {type(idx).__name__}"
        ) from None
    return idx


def thaw_index(idx: Any) -> Any:
    """Inverse of `freeze_index`."""
    if isinstance(idx, FrozenSlice):
        return slice(idx.start, idx.stop, idx.step)
    if isinstance(idx, FrozenArray):
        return idx.thaw()
    if isinstance(idx, tuple):
        return tuple(thaw_index(i) for i in idx)
    return idx
