"""Probabilistic nodes and joint distributions of a tree, as parax 0.11's `parax.probability`."""

from typing import Any, TypeGuard, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import ArrayLike, PyTree

from orrery.interface import ConfigError

from ._base import as_unwrapped, is_constant, is_unwrappable
from .bijectors import Inverse
from .constraints import AbstractConstrained, AbstractConstraint, tree_leafwise_constraint
from .distributions import (
    AbstractDistribution,
    ImproperUniform,
    Joint,
    Normal,
    Transformed,
    TruncatedNormal,
    Uniform,
)

T = TypeVar("T")

__all__ = [
    "AbstractProbabilistic",
    "is_dynamic",
    "is_leaf",
    "is_probabilistic",
    "tree_distributions",
    "tree_joint_distribution",
    "tree_unconstrained_distribution",
    "truncate_distribution",
]


class AbstractProbabilistic(AbstractConstrained[T]):
    """A node with a `distribution` whose event matches the node's value."""

    distribution: AbstractVar[AbstractDistribution]
    constraint: AbstractVar[AbstractConstraint]


def is_probabilistic(x: object) -> TypeGuard[AbstractProbabilistic]:
    """Whether `x` carries a distribution."""
    return isinstance(x, AbstractProbabilistic)


def tree_distributions(tree: PyTree) -> PyTree:
    """Each probabilistic node's distribution; a plain array gets `ImproperUniform`.

    Raises:
        ConfigError: a leaf that is neither (also a `ValueError`).
    """

    def get(path: Any, x: Any) -> Any:
        if is_probabilistic(x):
            return as_unwrapped(x.distribution)
        if eqx.is_inexact_array(x):
            return ImproperUniform(shape=jnp.shape(x))
        raise ConfigError(
            f"tree_distributions: the leaf at {jax.tree_util.keystr(path)} "
            f"({type(x).__name__}) is neither probabilistic nor an inexact array"
        )

    return jax.tree.map_with_path(get, tree, is_leaf=is_probabilistic)


def tree_joint_distribution(tree: PyTree) -> Joint:
    """One `Joint` over the tree (physical, constrained space)."""
    return Joint(tree_distributions(tree))


def tree_unconstrained_distribution(tree: PyTree) -> AbstractDistribution:
    """The joint distribution pulled back to the raw space through the tree's bijectors."""
    bijector = tree_leafwise_constraint(tree).bijector
    return Transformed(tree_joint_distribution(tree), Inverse(bijector))


def truncate_distribution(
    dist: AbstractDistribution, low: ArrayLike, high: ArrayLike
) -> AbstractDistribution:
    """`Normal` becomes `TruncatedNormal`, `Uniform` a narrower `Uniform`.

    Raises:
        ConfigError: any other distribution (it cannot be truncated here).
    """
    if isinstance(dist, Normal):
        return TruncatedNormal(dist.loc, dist.scale, low, high)
    if isinstance(dist, Uniform):
        return Uniform(jnp.asarray(low), jnp.asarray(high))
    raise ConfigError(f"dist: a {type(dist).__name__} cannot be truncated")


def is_leaf(x: object) -> bool:
    """Stop points for probabilistic partitioning."""
    return (is_probabilistic(x) and is_unwrappable(x)) or is_constant(x)


def is_dynamic(x: object) -> bool:
    """Trainable under probabilistic inference."""
    if is_constant(x):
        return False
    return (is_probabilistic(x) and is_unwrappable(x)) or eqx.is_inexact_array(x)
