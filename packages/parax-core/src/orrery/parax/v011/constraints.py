"""Constraints, as parax 0.11's `parax.constraints`.

The classes live in `_constraint_types`, distribution inference in `_infer`; this module
adds the constrained / constrainable interfaces and the tree tools.
"""

from abc import abstractmethod
from typing import Any, Self, TypeGuard, TypeVar

import equinox as eqx
import jax
from equinox import AbstractVar
from jaxtyping import PyTree

from orrery.interface import ConfigError, ConfigTypeError

from ._base import AbstractBounded, as_unwrapped, is_constant, is_unwrappable
from ._constraint_types import (
    AbstractConstraint,
    AbstractUncorrelatedConstraint,
    Custom,
    GreaterThan,
    Interval,
    Leafwise,
    LessThan,
    Negative,
    NonNegative,
    NonPositive,
    Positive,
    RealLine,
    Transformed,
    intersect,
    is_constraint,
)
from ._infer import infer_distribution_constraint

T = TypeVar("T")

__all__ = [
    "AbstractConstrainable",
    "AbstractConstrained",
    "AbstractConstraint",
    "AbstractUncorrelatedConstraint",
    "Custom",
    "GreaterThan",
    "Interval",
    "Leafwise",
    "LessThan",
    "Negative",
    "NonNegative",
    "NonPositive",
    "Positive",
    "RealLine",
    "Transformed",
    "infer_distribution_constraint",
    "intersect",
    "is_constrainable",
    "is_constrained",
    "is_constraint",
    "is_dynamic",
    "is_leaf",
    "tree_constrain",
    "tree_constraints",
    "tree_leafwise_constraint",
]


class AbstractConstrained(AbstractBounded[T]):
    """A node with a `constraint` (and so `bounds`); its value need not obey it."""

    constraint: AbstractVar[AbstractConstraint]


def is_constrained(x: object) -> TypeGuard[AbstractConstrained]:
    """Whether `x` carries a constraint."""
    return isinstance(x, AbstractConstrained)


class AbstractConstrainable(AbstractConstrained[T]):
    """A constrained node whose constraint can be replaced (`constrain`)."""

    @abstractmethod
    def constrain(self, constraint: AbstractConstraint) -> Self:
        """A copy under `constraint`, keeping the physical value."""


def is_constrainable(x: object) -> TypeGuard[AbstractConstrainable]:
    """Whether `x` accepts a new constraint."""
    return isinstance(x, AbstractConstrainable)


def _leaf_error(x: Any, where: str) -> ConfigError:
    return ConfigError(
        f"{where}: a leaf of type {type(x).__name__} is neither constrained nor an inexact "
        "array; mark it static or filter it out (eqx.filter) first"
    )


def tree_constraints(tree: PyTree) -> PyTree:
    """The constraint of each constrained node; a plain inexact array gets `RealLine`.

    Raises:
        ConfigError: a leaf is neither (also a `ValueError`, as in parax).
    """

    def get(x: Any) -> Any:
        if is_constrained(x):
            return as_unwrapped(x.constraint)
        if eqx.is_inexact_array(x):
            return RealLine(shape=x.shape)
        raise _leaf_error(x, "tree_constraints")

    return jax.tree.map(get, tree, is_leaf=is_constrained)


def tree_leafwise_constraint(tree: PyTree) -> Leafwise:
    """`tree_constraints(tree)` as one `Leafwise` constraint."""
    return Leafwise(tree_constraints(tree))


def tree_constrain(tree: PyTree, constraints: PyTree) -> PyTree:
    """Apply a matching pytree of constraints: constrainable nodes take theirs.

    A plain array accepts only `RealLine` (it is returned as it is).

    Raises:
        ConfigTypeError: a bounded constraint for a plain array (wrap it in `Constrained`).
        ConfigError: a leaf that is neither constrainable nor an array.
    """

    def apply(x: Any, c: Any) -> Any:
        if is_constrainable(x):
            return x.constrain(c)
        if eqx.is_inexact_array(x):
            if isinstance(c, RealLine):
                return x
            raise ConfigTypeError(
                "tree_constrain: cannot put a bounded constraint on a plain array; "
                "wrap it in `Constrained` first"
            )
        raise _leaf_error(x, "tree_constrain")

    return jax.tree.map(apply, tree, constraints, is_leaf=is_constrainable)


def is_leaf(x: object) -> bool:
    """Stop points for constrained partitioning: unwrappable constrained nodes and constants."""
    return (is_constrained(x) and is_unwrappable(x)) or is_constant(x)


def is_dynamic(x: object) -> bool:
    """Trainable under constrained inference: not constant, and a constrained node or array."""
    if is_constant(x):
        return False
    return (is_constrained(x) and is_unwrappable(x)) or eqx.is_inexact_array(x)
