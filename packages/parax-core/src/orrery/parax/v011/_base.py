"""The tagging interfaces every other parax 0.11 module builds on.

Kept in one dependency-free module so that constraints, wrappers and variables can all
import them without importing each other (parax 0.11 breaks its cycles with imports
inside functions; here the order is simply one-way).
"""

from abc import abstractmethod
from typing import Any, ClassVar, Generic, Self, TypeGuard, TypeVar

import equinox as eqx
from equinox import AbstractVar

T = TypeVar("T")

__all__ = [
    "AbstractAnnotated",
    "AbstractBounded",
    "AbstractConstant",
    "AbstractUnwrappable",
    "AbstractWrappable",
    "as_free",
    "as_unwrapped",
    "is_annotated",
    "is_bounded",
    "is_constant",
    "is_unwrappable",
    "is_wrappable",
]


class AbstractUnwrappable(eqx.Module, Generic[T]):
    """A node that `unwrap` replaces with the result of its own `unwrap()` method."""

    #: Whether `unwrap` resolves the wrapped nodes below this one before calling
    #: `unwrap()` here. `Tie` turns it off: it follows paths through its still-wrapped tree.
    unwraps_descendants_first: ClassVar[bool] = True

    @abstractmethod
    def unwrap(self) -> T:
        """The value this node stands for (its descendants already resolved)."""


def is_unwrappable(x: object) -> TypeGuard[AbstractUnwrappable]:
    """Whether `x` is an `AbstractUnwrappable`."""
    return isinstance(x, AbstractUnwrappable)


def as_unwrapped(tree: Any) -> Any:
    """`tree.unwrap()` for an unwrappable root, else `tree` itself (no recursion)."""
    return tree.unwrap() if isinstance(tree, AbstractUnwrappable) else tree


class AbstractWrappable(eqx.Module, Generic[T]):
    """A node that can put a new (unwrapped) value back inside its own structure."""

    @abstractmethod
    def wrap(self, tree: T) -> Self:
        """A copy of this node holding `tree` (the inverse of unwrapping it)."""


def is_wrappable(x: object) -> TypeGuard[AbstractWrappable]:
    """Whether `x` is an `AbstractWrappable`."""
    return isinstance(x, AbstractWrappable)


class AbstractConstant(eqx.Module, Generic[T]):
    """A tag for fixed or frozen nodes (partition filters leave them out).

    The tag alone stops no gradient; `Fixed` and `Freeze` do that when unwrapped.
    """

    @abstractmethod
    def free(self) -> T:
        """The wrapped value without the constant tag."""


def is_constant(x: object) -> TypeGuard[AbstractConstant]:
    """Whether `x` is an `AbstractConstant` (`Fixed`, `Freeze`)."""
    return isinstance(x, AbstractConstant)


def as_free(value: Any) -> Any:
    """`value.free()` for a constant, else `value` unchanged."""
    return value.free() if isinstance(value, AbstractConstant) else value


class AbstractAnnotated(eqx.Module, Generic[T]):
    """A node that carries metadata (units, descriptions, tags)."""

    metadata: AbstractVar[T]


def is_annotated(x: object) -> TypeGuard[AbstractAnnotated]:
    """Whether `x` carries metadata."""
    return isinstance(x, AbstractAnnotated)


class AbstractBounded(eqx.Module, Generic[T]):
    """A node with `bounds = (lower, upper)`, each shaped like its value."""

    bounds: AbstractVar[tuple[T, T]]


def is_bounded(x: object) -> TypeGuard[AbstractBounded]:
    """Whether `x` has bounds."""
    return isinstance(x, AbstractBounded)
