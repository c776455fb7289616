"""Bijectors of parax 0.11: distreqx's, plus the ones parax 0.11 adds or fixes.

Re-exported from distreqx: `AbstractBijector` (and its abstract helpers), `Block`, `Chain`,
`DiagLinear`, `ScalarAffine`, `Shift`, `Tanh`, `TriangularLinear`, `UnconstrainedAffine`.
Our own: `Identity`, `Sigmoid` (finite gradients where it saturates), `NormalCDF`,
`Quantile`, `Elementwise` and `Leafwise`; `Exp`, `Softplus` and `Inverse` are shared with
`orrery.parax.bijectors`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import jax.scipy.stats as jstats
from distreqx.bijectors import (
    AbstractBijector,
    AbstractForwardInverseBijector,
    AbstractFwdLogDetJacBijector,
    AbstractInvLogDetJacBijector,
    AbstractLinearBijector,
    Block,
    Chain,
    DiagLinear,
    ScalarAffine,
    Shift,
    Tanh,
    TriangularLinear,
    UnconstrainedAffine,
)
from distreqx.distributions import AbstractDistribution
from jaxtyping import Array, PyTree

from orrery.interface import ConfigError

from ..bijectors import Exp, Inverse, Softplus

__all__ = [
    "AbstractBijector",
    "AbstractForwardInverseBijector",
    "AbstractFwdLogDetJacBijector",
    "AbstractInvLogDetJacBijector",
    "AbstractLinearBijector",
    "Block",
    "Chain",
    "DiagLinear",
    "Elementwise",
    "Exp",
    "Identity",
    "Inverse",
    "Leafwise",
    "NormalCDF",
    "Quantile",
    "ScalarAffine",
    "Shift",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "TriangularLinear",
    "UnconstrainedAffine",
]


class _AbstractPointwise(
    AbstractForwardInverseBijector,
    AbstractFwdLogDetJacBijector,
    AbstractInvLogDetJacBijector,
    strict=True,
):
    """A bijector acting on each element alone (log-determinant per element)."""


class Identity(_AbstractPointwise, strict=True):
    """``y = x`` on any pytree (log-determinant zero, shaped like the input)."""

    _is_constant_jacobian: bool = True
    _is_constant_log_det: bool = True

    def forward_and_log_det(self, x: PyTree) -> tuple[PyTree, PyTree]:
        return x, jax.tree.map(jnp.zeros_like, x)

    def inverse_and_log_det(self, y: PyTree) -> tuple[PyTree, PyTree]:
        return y, jax.tree.map(jnp.zeros_like, y)

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Identity


class Sigmoid(_AbstractPointwise, strict=True):
    """``y = 1 / (1 + exp(-x))`` onto (0, 1), written so that no gradient is NaN.

    The log-determinant is ``-softplus(-x) - softplus(x)``, finite for every finite x;
    the inverse is ``log(y) - log1p(-y)``.
    """

    _is_constant_jacobian: bool = False
    _is_constant_log_det: bool = False

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return jax.nn.sigmoid(x), -jax.nn.softplus(-x) - jax.nn.softplus(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        x = jnp.log(y) - jnp.log1p(-y)
        return x, jax.nn.softplus(-x) + jax.nn.softplus(x)

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Sigmoid


class NormalCDF(_AbstractPointwise, strict=True):
    """The standard normal CDF: the real line onto (0, 1); the inverse maps 0, 1 to ∓inf."""

    _is_constant_jacobian: bool = False
    _is_constant_log_det: bool = False

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return jss.ndtr(x), jstats.norm.logpdf(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        x = jss.ndtri(y)
        return x, -jstats.norm.logpdf(x)

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is NormalCDF


class Quantile(_AbstractPointwise, strict=True):
    """A distribution's quantile function: (0, 1) onto its support; the inverse is its CDF.

    Forward clips u to ``[eps, 1 - eps]`` so that a saturated `NormalCDF` before it never
    lands exactly on (or past) the edge of the support.

    Args:
        distribution: a distreqx distribution with `icdf`, `cdf` and `log_prob`.
    """

    distribution: AbstractDistribution
    _is_constant_jacobian: bool = False
    _is_constant_log_det: bool = False

    def forward_and_log_det(self, u: Array) -> tuple[Array, Array]:
        eps = jnp.finfo(jnp.result_type(u, float)).eps
        y = self.distribution.icdf(jnp.clip(u, eps, 1.0 - eps))
        return y, -self.distribution.log_prob(y)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        return self.distribution.cdf(y), self.distribution.log_prob(y)

    def same_as(self, other: AbstractBijector) -> bool:
        # equinox's == is a tree comparison: a bool (or NumPy bool) for concrete leaves.
        return type(other) is Quantile and bool(self.distribution == other.distribution)


class Elementwise(_AbstractPointwise, strict=True):
    """One of several elementwise bijectors per element, picked by boolean masks.

    Every branch is evaluated everywhere; where a branch's mask is off, its inverse sees
    `safe_values[i]` (a point of its own image) instead, so no unused branch puts a NaN
    into a gradient. The masks must cover each element exactly once.

    Args:
        masks: one boolean array per bijector.
        bijectors: the elementwise bijectors.
        safe_values: one value per bijector inside its image.
    """

    masks: tuple[Array, ...]
    bijectors: tuple[AbstractBijector, ...]
    safe_values: tuple[Array, ...]
    _is_constant_jacobian: bool = False
    _is_constant_log_det: bool = False

    def _pick(self, results: list[tuple[Array, Array]]) -> tuple[Array, Array]:
        out, log_det = results[0]
        for mask, (y, ld) in zip(self.masks[1:], results[1:], strict=True):
            out = jnp.where(mask, y, out)
            log_det = jnp.where(mask, ld, log_det)
        return out, log_det

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return self._pick([b.forward_and_log_det(x) for b in self.bijectors])

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        return self._pick(
            [
                b.inverse_and_log_det(jnp.where(m, y, s))
                for m, b, s in zip(self.masks, self.bijectors, self.safe_values, strict=True)
            ]
        )

    def same_as(self, other: AbstractBijector) -> bool:
        return other is self


def _is_bijector(x: object) -> bool:
    return isinstance(x, AbstractBijector)


def _sum_leaves(tree: PyTree) -> Array:
    return functools.reduce(jnp.add, [jnp.sum(v) for v in jax.tree.leaves(tree)])


class Leafwise(AbstractFwdLogDetJacBijector, AbstractInvLogDetJacBijector, strict=True):
    """A pytree of bijectors applied leaf by leaf to a pytree of values.

    The log-determinant is the sum over every leaf (and element).

    Args:
        bijectors: a non-empty pytree whose leaves are bijectors.

    Raises:
        ConfigError: the pytree holds no bijector.
    """

    bijectors: PyTree[AbstractBijector]
    _is_constant_jacobian: bool
    _is_constant_log_det: bool

    def __init__(self, bijectors: PyTree[AbstractBijector]):
        leaves = jax.tree.leaves(bijectors, is_leaf=_is_bijector)
        if not leaves:
            raise ConfigError("bijectors: the pytree of bijectors is empty")
        self.bijectors = bijectors
        self._is_constant_jacobian = all(b.is_constant_jacobian for b in leaves)
        self._is_constant_log_det = all(b.is_constant_log_det for b in leaves)

    def _map(self, method: str, value: PyTree) -> PyTree:
        return jax.tree.map(
            lambda b, v: getattr(b, method)(v), self.bijectors, value, is_leaf=_is_bijector
        )

    def forward(self, x: PyTree) -> PyTree:
        return self._map("forward", x)

    def inverse(self, y: PyTree) -> PyTree:
        return self._map("inverse", y)

    def _with_log_det(self, method: str, value: PyTree) -> tuple[PyTree, Array]:
        pairs = self._map(method, value)
        is_pair = lambda p: isinstance(p, tuple) and len(p) == 2
        out = jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair)
        log_det = jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)
        return out, _sum_leaves(log_det)

    def forward_and_log_det(self, x: PyTree) -> tuple[PyTree, Array]:
        return self._with_log_det("forward_and_log_det", x)

    def inverse_and_log_det(self, y: PyTree) -> tuple[PyTree, Array]:
        return self._with_log_det("inverse_and_log_det", y)

    def same_as(self, other: AbstractBijector) -> bool:
        if type(other) is not Leafwise:
            return False
        mine = jax.tree.structure(self.bijectors, is_leaf=_is_bijector)
        if mine != jax.tree.structure(other.bijectors, is_leaf=_is_bijector):
            return False
        pairs = zip(
            jax.tree.leaves(self.bijectors, is_leaf=_is_bijector),
            jax.tree.leaves(other.bijectors, is_leaf=_is_bijector),
            strict=True,
        )
        return all(a.same_as(b) for a, b in pairs)
