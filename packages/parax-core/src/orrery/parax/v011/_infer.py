"""`infer_distribution_constraint`: the support of a distribution and a whitening bijector.

A distribution with an `icdf` is whitened by the copula map (standard normal raw space
through `NormalCDF` then the distribution's `Quantile`); `Normal`, `Logistic` and the
multivariate normals by their own affine maps; `Transformed` by its base's constraint
followed by its bijector; `Joint` leaf by leaf. Bounds are the support, closed at a
finite end where the density there is positive and finite, open at ±inf.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from . import distributions as dists
from ._constraint_types import (
    AbstractConstraint,
    Custom,
    Interval,
    Leafwise,
    Positive,
    RealLine,
    Transformed,
    base_space,
)
from .bijectors import (
    AbstractBijector,
    Chain,
    Identity,
    NormalCDF,
    Quantile,
    ScalarAffine,
    Shift,
    TriangularLinear,
)
from .bijectors import Leafwise as LeafwiseBijector

__all__ = ["infer_distribution_constraint"]

_NO_METHOD = (NotImplementedError, AttributeError, ValueError, TypeError)


def _includes(dist: Any, end: Array) -> Array:
    """A finite end belongs to the support where the density there is positive and finite."""
    finite = jnp.isfinite(end)
    try:
        return finite & jnp.isfinite(dist.log_prob(end))
    except _NO_METHOD:
        return finite


def _from_support(bijector: AbstractBijector, bounds: tuple[PyTree, PyTree], closed: Any) -> Custom:
    lower, upper = bounds
    lo_leaves, treedef = jax.tree.flatten(lower)
    spaces = [
        base_space(lo, hi) for lo, hi in zip(lo_leaves, treedef.flatten_up_to(upper), strict=True)
    ]
    base = treedef.unflatten([s[2] for s in spaces])
    if not jax.tree_util.treedef_is_leaf(treedef):
        base = LeafwiseBijector(base)
    return Custom(
        bijector=bijector,
        bounds=bounds,
        closed=closed,
        base_bounds=(
            treedef.unflatten([s[0] for s in spaces]),
            treedef.unflatten([s[1] for s in spaces]),
        ),
        base_bijector=base,
    )


def _support_constraint(
    dist: Any, bijector: AbstractBijector, lower: Array, upper: Array
) -> Custom:
    return _from_support(bijector, (lower, upper), (_includes(dist, lower), _includes(dist, upper)))


def _real_line(dist: Any, bijector: AbstractBijector) -> Custom:
    return Custom(bijector=bijector, bounds=RealLine(shape=dist.event_shape).bounds, closed=False)


@singledispatch
def infer_distribution_constraint(dist: Any) -> AbstractConstraint:
    """The constraint a `Random` variable with this distribution gets by default.

    Register a handler for a new distribution class with
    ``infer_distribution_constraint.register(cls)``.
    """
    try:
        lower, upper = jnp.asarray(dist.icdf(0.0)), jnp.asarray(dist.icdf(1.0))
    except _NO_METHOD:
        pass
    else:
        return _support_constraint(dist, Chain([Quantile(dist), NormalCDF()]), lower, upper)
    if isinstance(dist, dists.Gamma | dists.LogNormal):
        support: AbstractConstraint = Positive(shape=dist.event_shape)
    elif isinstance(dist, dists.Beta):
        support = Interval(jnp.zeros(dist.event_shape), jnp.ones(dist.event_shape))
    elif isinstance(dist, dists.Uniform):
        support = Interval(dist.low, dist.high)
    else:
        return _real_line(dist, Identity())
    return _support_constraint(dist, support.bijector, *support.bounds)


@infer_distribution_constraint.register(dists.Normal)
@infer_distribution_constraint.register(dists.Logistic)
def _loc_scale(dist: Any) -> AbstractConstraint:
    affine = ScalarAffine(shift=jnp.array(0.0), scale=dist.scale)
    return _real_line(dist, Chain([Shift(dist.loc), affine]))


@infer_distribution_constraint.register(dists.MultivariateNormalDiag)
def _mvn_diag(dist: Any) -> AbstractConstraint:
    affine = ScalarAffine(shift=jnp.array(0.0), scale=dist.scale_diag)
    return _real_line(dist, Chain([Shift(dist.loc), affine]))


@infer_distribution_constraint.register(dists.MultivariateNormalTri)
def _mvn_tri(dist: Any) -> AbstractConstraint:
    return _real_line(dist, Chain([Shift(dist.loc), TriangularLinear(matrix=dist.scale_tri)]))


@infer_distribution_constraint.register(dists.MultivariateNormalFullCovariance)
def _mvn_full(dist: Any) -> AbstractConstraint:
    chol = jnp.linalg.cholesky(dist.covariance_matrix)
    return _real_line(dist, Chain([Shift(dist.loc), TriangularLinear(matrix=chol)]))


@infer_distribution_constraint.register(dists.Transformed)
def _transformed(dist: Any) -> AbstractConstraint:
    pushed = Transformed(infer_distribution_constraint(dist.distribution), dist.bijector)
    return _from_support(pushed.bijector, pushed.bounds, pushed.closed)


@infer_distribution_constraint.register(dists.Joint)
def _joint(dist: Any) -> AbstractConstraint:
    tree = jax.tree.map(
        infer_distribution_constraint,
        dist.distributions,
        is_leaf=lambda x: isinstance(x, dists.AbstractDistribution),
    )
    return Leafwise(tree)
