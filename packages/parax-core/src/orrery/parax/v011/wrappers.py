"""Wrappers and `unwrap`/`wrap`, as parax 0.11's `parax.wrappers`.

A model is a plain pytree (an `equinox.Module`, say) some of whose nodes are
unwrappables; `unwrap(model)` replaces each by what it stands for, innermost first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree

from orrery.interface import ConfigError

from ._base import (
    AbstractAnnotated,
    AbstractBounded,
    AbstractConstant,
    AbstractUnwrappable,
    AbstractWrappable,
    as_unwrapped,
    is_unwrappable,
    is_wrappable,
)
from .constraints import AbstractConstrainable, AbstractConstraint, infer_distribution_constraint
from .distributions import AbstractDistribution
from .probability import AbstractProbabilistic

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")
P = ParamSpec("P")

__all__ = [
    "AbstractUnwrappable",
    "AbstractWrappable",
    "Annotate",
    "Apply",
    "Bound",
    "Combine",
    "Constrain",
    "Freeze",
    "Parameterize",
    "Probabilize",
    "Static",
    "Tie",
    "as_opaque",
    "as_unwrapped",
    "is_unwrappable",
    "is_wrappable",
    "unwrap",
    "unwrap_self",
    "wrap",
]


def _resolve_all(node: PyTree, include_self: bool) -> PyTree:
    """Unwrap every unwrappable in `node` (and `node` itself if `include_self`)."""

    def one(leaf: PyTree) -> PyTree:
        if not is_unwrappable(leaf):
            return leaf
        if not leaf.unwraps_descendants_first:
            return _resolve_all(leaf.unwrap(), include_self=True)
        return _resolve_all(leaf, include_self=False).unwrap()

    def stop(x: PyTree) -> bool:
        return is_unwrappable(x) and (include_self or x is not node)

    return jax.tree.map(one, node, is_leaf=stop)


def _resolve_from_match(
    node: PyTree, only_if: Callable[[PyTree], bool], include_self: bool
) -> PyTree:
    """Top-down: the first node matching `only_if` is unwrapped whole."""
    if include_self and only_if(node):
        return _resolve_all(node, include_self=True)

    def one(leaf: PyTree) -> PyTree:
        if only_if(leaf):
            return _resolve_all(leaf, include_self=True)
        if is_unwrappable(leaf):
            return _resolve_from_match(leaf, only_if, include_self=False)
        return leaf

    def stop(x: PyTree) -> bool:
        return (is_unwrappable(x) or only_if(x)) and (include_self or x is not node)

    return jax.tree.map(one, node, is_leaf=stop)


def _resolve_matches(node: PyTree, only_if: Callable[[PyTree], bool], include_self: bool) -> PyTree:
    """Bottom-up: only the unwrappables matching `only_if` are unwrapped."""

    def one(leaf: PyTree) -> PyTree:
        if not is_unwrappable(leaf):
            return leaf
        inner = _resolve_matches(leaf, only_if, include_self=False)
        return inner.unwrap() if only_if(leaf) else inner

    def stop(x: PyTree) -> bool:
        return is_unwrappable(x) and (include_self or x is not node)

    return jax.tree.map(one, node, is_leaf=stop)


def unwrap(
    tree: PyTree, only_if: Callable[[PyTree], bool] | None = None, cascade: bool = True
) -> PyTree:
    """Replace unwrappable nodes by what they stand for, innermost first.

    Args:
        tree: any pytree.
        only_if: unwrap only where this predicate holds. With ``cascade=True`` the first
            matching node (searched from the root) is unwrapped with everything below
            it; with ``cascade=False`` only matching unwrappables are, each after its
            own descendants.
        cascade: see `only_if`.

    Returns:
        The pytree with those nodes resolved.
    """
    if only_if is None:
        return _resolve_all(tree, include_self=True)
    if cascade:
        return _resolve_from_match(tree, only_if, include_self=True)
    return _resolve_matches(tree, only_if, include_self=True)


def unwrap_self(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorator: the method runs on ``unwrap(self)``."""

    @functools.wraps(method)
    def run(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(unwrap(self), *args, **kwargs)

    return run


def wrap(
    template: PyTree, values: PyTree, only_if: Callable[[PyTree], bool] | None = None
) -> PyTree:
    """Put unwrapped `values` back into the wrappables of `template`, outermost first.

    The inverse of `unwrap` for wrappable nodes (variables, `Freeze`, `Static`, ...):
    ``wrap(model, unwrap(model))`` gives `model` back. With `only_if`, only subtrees
    whose root matches are wrapped; elsewhere `values` is taken as it is.
    """

    if only_if is None:
        return _wrap_all(template, values, include_self=True)
    return _wrap_matching(template, values, only_if, include_self=True)


def _wrap_all(t: PyTree, u: PyTree, include_self: bool) -> PyTree:
    """Wrap `u` into every wrappable of `t`, outermost first."""

    def one(tl: PyTree, ul: PyTree) -> PyTree:
        if not is_wrappable(tl):
            return ul
        return _wrap_all(tl, tl.wrap(ul), include_self=False)

    def stop(x: PyTree) -> bool:
        return is_wrappable(x) and (include_self or x is not t)

    return jax.tree.map(one, t, u, is_leaf=stop)


def _wrap_matching(
    t: PyTree, u: PyTree, only_if: Callable[[PyTree], bool], include_self: bool
) -> PyTree:
    """Wrap `u` into the subtrees of `t` whose root matches `only_if`."""
    if include_self and only_if(t):
        return _wrap_all(t, u, include_self=True)

    def one(tl: PyTree, ul: PyTree) -> PyTree:
        if only_if(tl):
            return _wrap_all(tl, ul, include_self=True)
        if is_wrappable(tl):
            return _wrap_matching(tl, ul, only_if, include_self=False)
        return ul

    def stop(x: PyTree) -> bool:
        return (is_wrappable(x) or only_if(x)) and (include_self or x is not t)

    return jax.tree.map(one, t, u, is_leaf=stop)


class Parameterize(AbstractUnwrappable[T]):
    """Unwraps to ``fn(*args, **kwargs)`` (the arguments unwrapped first)."""

    fn: Callable[..., T]
    args: tuple[PyTree, ...]
    kwargs: dict[str, PyTree]

    def __init__(self, fn: Callable[..., T], *args: PyTree, **kwargs: PyTree):
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = kwargs

    def unwrap(self) -> T:
        return self.fn(*self.args, **self.kwargs)


class Apply(AbstractUnwrappable[T]):
    """Unwraps to `tree` with ``fn(leaf, *args, **kwargs)`` applied to each array-like leaf.

    Other leaves (strings, None, ...) pass through; Python numbers and bools are
    array-like and are mapped.
    """

    fn: Callable[..., PyTree]
    tree: T
    args: tuple[PyTree, ...]
    kwargs: dict[str, PyTree]

    def __init__(self, fn: Callable[..., PyTree], tree: T, *args: PyTree, **kwargs: PyTree):
        self.fn = fn
        self.tree = tree
        self.args = tuple(args)
        self.kwargs = kwargs

    def unwrap(self) -> T:
        def one(x: PyTree) -> PyTree:
            return self.fn(x, *self.args, **self.kwargs) if eqx.is_array_like(x) else x

        return jax.tree.map(one, self.tree, is_leaf=eqx.is_array_like)


class Freeze(AbstractUnwrappable[T], AbstractWrappable[T], AbstractConstant[T]):
    """Stops gradients through every array of `tree` when unwrapped (a constant for filters).

    Python scalars are returned as they are (they stay concrete under `jax.jit`);
    ``Freeze(Freeze(x))`` is ``Freeze(x)``.
    """

    tree: T

    def __init__(self, tree: T | Freeze[T]):
        if isinstance(tree, Freeze):  # Freeze(Freeze(x)) is Freeze(x)
            self.tree = tree.tree
        else:
            self.tree = tree

    def free(self) -> T:
        return self.tree

    def unwrap(self) -> T:
        arrays, rest = eqx.partition(self.tree, eqx.is_array)
        return eqx.combine(jax.lax.stop_gradient(arrays), rest)

    def wrap(self, tree: T) -> Freeze[T]:
        return Freeze(tree)


class _TiePlaceholder(eqx.Module):
    """What stands where a tied target was: no arrays, so optimisers never see it."""


class Tie(AbstractUnwrappable[PyTree]):
    """Ties `target` to `source`: the target is removed and recomputed on unwrap.

    ``Tie(model, target=lambda m: m.b, source=lambda m: m.a, tie_fn=f)`` unwraps to
    `model` with ``b = f(unwrap(a))``. Tying a `Tie` adds to its ties; the paths always
    refer to the underlying (untied) tree. The tree is followed while still wrapped,
    so a wrapper that collapses a path when unwrapped cannot take an endpoint with it.
    """

    tree: PyTree
    ties: tuple = eqx.field(static=True)

    unwraps_descendants_first: ClassVar[bool] = False

    def __init__(
        self,
        tree: PyTree,
        target: Callable[[PyTree], PyTree],
        source: Callable[[PyTree], PyTree],
        tie_fn: Callable[[PyTree], PyTree] = lambda x: x,
    ):
        base = tree.tree if isinstance(tree, Tie) else tree
        self.tree = eqx.tree_at(target, base, replace_fn=lambda _: _TiePlaceholder())
        previous = tree.ties if isinstance(tree, Tie) else ()
        self.ties = (*previous, (target, source, tie_fn))

    def unwrap(self) -> PyTree:
        out = self.tree
        for target, source, tie_fn in self.ties:
            out = eqx.tree_at(target, out, tie_fn(unwrap(source(out))))
        return out


class Static(AbstractUnwrappable[T], AbstractWrappable[T]):
    """Holds `tree` as static (hashable) data; unwraps to it."""

    tree: T = eqx.field(static=True)

    def __init__(self, tree: T | Static[T]):
        if isinstance(tree, Static):  # Static(Static(x)) is Static(x)
            self.tree = tree.tree
        else:
            self.tree = tree

    def unwrap(self) -> T:
        return self.tree

    def wrap(self, tree: T) -> Static[T]:
        return Static(tree)


def as_opaque(tree: PyTree) -> Freeze | Static:
    """`tree` hidden from optimisers: `Static` for an opaque Python object (a function),
    `Freeze` for arrays and pytrees; a `Freeze` or `Static` is returned as it is."""
    if isinstance(tree, Freeze | Static):
        return tree
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1 and leaves[0] is tree and not eqx.is_array(tree):
        return Static(tree)
    return Freeze(tree)


class Combine(AbstractUnwrappable[T]):
    """Unwraps to ``eqx.combine(*pytrees, is_leaf=is_leaf)``."""

    pytrees: tuple[Any, ...]
    is_leaf: Any = eqx.field(converter=as_opaque)

    def __init__(self, *pytrees: PyTree, is_leaf: Callable[[PyTree], bool] | None = None):
        self.pytrees = pytrees
        self.is_leaf = is_leaf

    def unwrap(self) -> T:
        return eqx.combine(*self.pytrees, is_leaf=as_unwrapped(self.is_leaf))


class Annotate(AbstractUnwrappable[T], AbstractWrappable[T], AbstractAnnotated[dict]):
    """Attaches `metadata` to any pytree; unwraps to the tree."""

    tree: T
    metadata: Any = eqx.field(converter=as_opaque)

    def unwrap(self) -> T:
        return self.tree

    def wrap(self, other: T) -> Annotate[T]:
        return Annotate(tree=other, metadata=self.metadata)


class Bound(AbstractUnwrappable[T], AbstractWrappable[T], AbstractBounded[T]):
    """Attaches `bounds` to any pytree (not checked); unwraps to the tree."""

    bounds: Any = eqx.field(converter=as_opaque)
    tree: T

    def unwrap(self) -> T:
        return self.tree

    def wrap(self, other: T) -> Bound[T]:
        # parax 0.11.7 rebuilt an `Annotate` here (a slip): we keep the bounds.
        return Bound(bounds=self.bounds, tree=other)


def _raw_of(constraint: Any, tree: Any, name: str) -> Any:
    raw = as_unwrapped(constraint).bijector.inverse(unwrap(tree))
    return eqx.error_if(
        raw,
        jnp.any(jnp.isnan(ravel_pytree(raw)[0])),
        f"{name}: Constraint violated (the raw value is NaN)",
    )


def _one_of(tree: Any, raw_value: Any, name: str) -> None:
    if (tree is None) == (raw_value is None):
        raise ConfigError(f"{name}: give exactly one of `tree` and `raw_value`")


def _given_or_raw(constraint: Any, tree: T | None, raw_value: T | None, name: str) -> T:
    """`raw_value` when given, else the raw value of `tree` (`_one_of` checked that one is)."""
    if raw_value is not None:
        return raw_value
    return _raw_of(constraint, tree, name)


class Constrain(AbstractUnwrappable[T], AbstractWrappable[T], AbstractConstrainable[T]):
    """Attaches a constraint to any pytree, storing its raw (unconstrained) value."""

    constraint: Any = eqx.field(converter=as_opaque)
    raw_value: T

    def __init__(
        self, constraint: AbstractConstraint, tree: T | None = None, *, raw_value: T | None = None
    ):
        _one_of(tree, raw_value, "Constrain")
        self.constraint = constraint
        self.raw_value = _given_or_raw(constraint, tree, raw_value, "Constrain")

    @property
    def tree(self) -> T:
        return as_unwrapped(self.constraint).bijector.forward(self.raw_value)

    @property
    def bounds(self) -> tuple[T, T]:
        return as_unwrapped(self.constraint).bounds

    def constrain(self, constraint: AbstractConstraint) -> Constrain[T]:
        return Constrain(constraint, self.tree)

    def unwrap(self) -> T:
        return self.tree

    def wrap(self, other: T) -> Self:
        raw = as_unwrapped(self.constraint).bijector.inverse(other)
        return eqx.tree_at(lambda x: x.raw_value, self, raw)


class Probabilize(AbstractUnwrappable[T], AbstractWrappable[T], AbstractProbabilistic[T]):
    """Attaches a distribution (and its inferred or given constraint) to any pytree."""

    distribution: Any = eqx.field(converter=as_opaque)
    constraint: Any = eqx.field(converter=as_opaque)
    raw_value: T

    def __init__(
        self,
        distribution: AbstractDistribution,
        tree: T | None = None,
        constraint: AbstractConstraint | None = None,
        *,
        raw_value: T | None = None,
    ):
        _one_of(tree, raw_value, "Probabilize")
        self.distribution = distribution
        if constraint is None:
            constraint = infer_distribution_constraint(distribution)
        self.constraint = constraint
        self.raw_value = _given_or_raw(constraint, tree, raw_value, "Probabilize")

    @property
    def tree(self) -> T:
        return as_unwrapped(self.constraint).bijector.forward(self.raw_value)

    @property
    def bounds(self) -> tuple[T, T]:
        return as_unwrapped(self.constraint).bounds

    def constrain(self, constraint: AbstractConstraint) -> Probabilize[T]:
        return Probabilize(self.distribution, self.tree, constraint)

    def unwrap(self) -> T:
        return self.tree

    def wrap(self, other: T) -> Self:
        raw = as_unwrapped(self.constraint).bijector.inverse(other)
        return eqx.tree_at(lambda x: x.raw_value, self, raw)
