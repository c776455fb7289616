"""General filter functions, as parax 0.11's `parax.filters`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

import equinox as eqx
from distreqx.bijectors import AbstractBijector
from distreqx.distributions import AbstractDistribution
from jaxtyping import PyTree

__all__ = ["is_bijector", "is_distribution", "remove"]


def is_distribution(x: object) -> TypeGuard[AbstractDistribution]:
    """Whether `x` is a distreqx distribution."""
    return isinstance(x, AbstractDistribution)


def is_bijector(x: object) -> TypeGuard[AbstractBijector]:
    """Whether `x` is a distreqx bijector."""
    return isinstance(x, AbstractBijector)


def remove(
    pytree: PyTree,
    condition: Callable[[PyTree], bool],
    *,
    stop_if: Callable[[PyTree], bool] | None = None,
) -> PyTree:
    """`pytree` with every node matching `condition` replaced by None.

    Traversal stops at matching nodes and at nodes matching `stop_if`.
    """
    stop = stop_if or (lambda _: False)
    return eqx.filter(
        pytree, filter_spec=condition, is_leaf=lambda x: stop(x) or condition(x), inverse=True
    )
