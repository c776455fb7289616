"""Distributions of parax 0.11: distreqx's, plus `TruncatedNormal`, `Independent`
(with `reinterpreted_batch_ndims`), a pytree `Joint` and `ImproperUniform`.

Re-exported from distreqx: the abstract classes, `Bernoulli`, `Beta`, `Categorical`,
`Gamma`, `Logistic`, `MixtureSameFamily`, the `MultivariateNormal*` family, `Normal`,
`OneHotCategorical`, `Transformed`, `Uniform`.
"""

from __future__ import annotations

import functools
import math
from typing import NoReturn

import equinox as eqx
import jax
import jax.numpy as jnp
from distreqx.distributions import (
    AbstractCDFDistribution,
    AbstractDistribution,
    AbstractProbDistribution,
    AbstractSampleLogProbDistribution,
    AbstractSTDDistribution,
    AbstractSurvivalDistribution,
    AbstractTransformed,
    Bernoulli,
    Beta,
    Categorical,
    Gamma,
    Logistic,
    MixtureSameFamily,
    MultivariateNormalDiag,
    MultivariateNormalFullCovariance,
    MultivariateNormalTri,
    Normal,
    OneHotCategorical,
    Transformed,
    Uniform,
)
from jax.scipy.special import ndtr, ndtri
from jaxtyping import Array, ArrayLike, Key, PyTree

from orrery.interface import ConfigError

__all__ = [
    "AbstractCDFDistribution",
    "AbstractDistribution",
    "AbstractProbDistribution",
    "AbstractSTDDistribution",
    "AbstractSampleLogProbDistribution",
    "AbstractSurvivalDistribution",
    "AbstractTransformed",
    "Bernoulli",
    "Beta",
    "Categorical",
    "Gamma",
    "ImproperUniform",
    "Independent",
    "Joint",
    "LogNormal",
    "Logistic",
    "MixtureSameFamily",
    "MultivariateNormalDiag",
    "MultivariateNormalFullCovariance",
    "MultivariateNormalTri",
    "Normal",
    "OneHotCategorical",
    "Transformed",
    "TruncatedNormal",
    "Uniform",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class TruncatedNormal(AbstractProbDistribution, strict=True):
    """A normal distribution (`loc`, `scale`) restricted to ``[low, high]``.

    Either bound may be infinite; moments stay finite (and differentiable) then, and an
    unbounded one equals `Normal(loc, scale)`. `icdf(0)` and `icdf(1)` are exactly `low`
    and `high`.
    """

    loc: Array
    scale: Array
    low: Array
    high: Array

    def __init__(self, loc: ArrayLike, scale: ArrayLike, low: ArrayLike, high: ArrayLike):
        self.loc = jnp.asarray(loc)
        self.scale = jnp.asarray(scale)
        self.low = jnp.asarray(low)
        self.high = jnp.asarray(high)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(
            self.loc.shape, self.scale.shape, self.low.shape, self.high.shape
        )

    def _z(self, x: Array) -> Array:
        # An infinite x stays infinite (never inf - inf inside a gradient).
        finite = jnp.isfinite(x)
        return jnp.where(finite, (jnp.where(finite, x, 0.0) - self.loc) / self.scale, x)

    def _mass(self) -> tuple[Array, Array]:
        lo, hi = ndtr(self._z(self.low)), ndtr(self._z(self.high))
        return lo, hi - lo

    @staticmethod
    def _phi(z: Array) -> tuple[Array, Array]:
        """phi(z) and z * phi(z), both 0 at an infinite z."""
        finite = jnp.isfinite(z)
        zs = jnp.where(finite, z, 0.0)
        phi = jnp.where(finite, jnp.exp(-0.5 * zs**2 - _LOG_SQRT_2PI), 0.0)
        return phi, jnp.where(finite, zs * phi, 0.0)

    def log_prob(self, value: Array) -> Array:
        value = jnp.asarray(value)
        z = self._z(value)
        _, mass = self._mass()
        inside = (value >= self.low) & (value <= self.high)
        lp = -0.5 * z**2 - _LOG_SQRT_2PI - jnp.log(self.scale) - jnp.log(mass)
        return jnp.where(inside, lp, -jnp.inf)

    def cdf(self, value: Array) -> Array:
        value = jnp.asarray(value)
        lo, mass = self._mass()
        c = (ndtr(self._z(value)) - lo) / mass
        return jnp.clip(
            jnp.where(value < self.low, 0.0, jnp.where(value > self.high, 1.0, c)), 0, 1
        )

    def log_cdf(self, value: Array) -> Array:
        return jnp.log(self.cdf(value))

    def survival_function(self, value: Array) -> Array:
        return 1.0 - self.cdf(value)

    def log_survival_function(self, value: Array) -> Array:
        return jnp.log(self.survival_function(value))

    def icdf(self, value: Array) -> Array:
        value = jnp.asarray(value)
        lo, mass = self._mass()
        inner = self.loc + self.scale * ndtri(lo + value * mass)
        return jnp.where(value == 0, self.low, jnp.where(value == 1, self.high, inner))

    def sample(self, key: Key[Array, ""]) -> Array:
        z = jax.random.truncated_normal(
            key,
            self._z(self.low),
            self._z(self.high),
            shape=self.event_shape,
            dtype=jnp.result_type(self.loc, self.scale, float),
        )
        return self.loc + self.scale * z

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        x = self.sample(key)
        return x, self.log_prob(x)

    def mean(self) -> Array:
        (pa, _), (pb, _) = self._phi(self._z(self.low)), self._phi(self._z(self.high))
        return self.loc + self.scale * (pa - pb) / self._mass()[1]

    def variance(self) -> Array:
        (pa, zpa), (pb, zpb) = self._phi(self._z(self.low)), self._phi(self._z(self.high))
        mass = self._mass()[1]
        return self.scale**2 * (1.0 + (zpa - zpb) / mass - ((pa - pb) / mass) ** 2)

    def stddev(self) -> Array:
        return jnp.sqrt(self.variance())

    def entropy(self) -> Array:
        (_, zpa), (_, zpb) = self._phi(self._z(self.low)), self._phi(self._z(self.high))
        mass = self._mass()[1]
        return (
            jnp.log(self.scale * mass)
            + 0.5 * math.log(2 * math.pi * math.e)
            + (zpa - zpb) / (2.0 * mass)
        )

    def mode(self) -> Array:
        return jnp.clip(self.loc, self.low, self.high)

    def median(self) -> Array:
        return self.icdf(jnp.asarray(0.5, dtype=jnp.result_type(self.loc, float)))

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        raise NotImplementedError("TruncatedNormal has no closed-form KL divergence")


class Independent(AbstractProbDistribution, strict=True):
    """Reinterprets batch dimensions of a distribution as event dimensions.

    With ``reinterpreted_batch_ndims=0`` (the default) the wrapped distribution's own
    broadcasting is kept and `log_prob` sums every element; with ``n > 0`` each method
    is vmapped ``n`` times over the distribution (for distributions batched with
    `eqx.filter_vmap`) and summed over those axes.
    """

    distribution: AbstractDistribution
    reinterpreted_batch_ndims: int = eqx.field(static=True)

    def __init__(self, distribution: AbstractDistribution, reinterpreted_batch_ndims: int = 0):
        if not isinstance(reinterpreted_batch_ndims, int) or reinterpreted_batch_ndims < 0:
            raise ConfigError(
                "reinterpreted_batch_ndims: expected an int >= 0, "
                f"got {reinterpreted_batch_ndims!r}"
            )
        self.distribution = distribution
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims

    def _call(self, method: str, *args: PyTree) -> PyTree:
        fn = lambda d, *a: getattr(d, method)(*a)
        for _ in range(self.reinterpreted_batch_ndims):
            fn = eqx.filter_vmap(fn)
        return fn(self.distribution, *args)

    def _summed(self, method: str, *args: PyTree) -> Array:
        out = self._call(method, *args)
        return functools.reduce(jnp.add, [jnp.sum(v) for v in jax.tree.leaves(out)])

    @property
    def event_shape(self) -> tuple[int, ...]:
        if self.reinterpreted_batch_ndims == 0:
            return self.distribution.event_shape
        return eqx.filter_eval_shape(self.sample, jax.random.key(0)).shape

    def sample(self, key: Key[Array, ""]) -> Array:
        n = self.reinterpreted_batch_ndims
        if n == 0:
            return self.distribution.sample(key)
        batch = jax.tree.leaves(eqx.filter(self.distribution, eqx.is_array))[0].shape[:n]
        keys = jax.random.split(key, math.prod(batch)).reshape(batch)
        return self._call("sample", keys)

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        x = self.sample(key)
        return x, self.log_prob(x)

    def log_prob(self, value: Array) -> Array:
        return self._summed("log_prob", value)

    def log_cdf(self, value: Array) -> Array:
        return self._summed("log_cdf", value)

    def cdf(self, value: Array) -> Array:
        return jnp.exp(self.log_cdf(value))

    def log_survival_function(self, value: Array) -> Array:
        return self._summed("log_survival_function", value)

    def survival_function(self, value: Array) -> Array:
        return jnp.exp(self.log_survival_function(value))

    def entropy(self) -> Array:
        return self._summed("entropy")

    def mean(self) -> Array:
        return self._call("mean")

    def median(self) -> Array:
        return self._call("median")

    def mode(self) -> Array:
        return self._call("mode")

    def variance(self) -> Array:
        return self._call("variance")

    def stddev(self) -> Array:
        return self._call("stddev")

    def icdf(self, value: Array) -> Array:
        return self._call("icdf", value)

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        raise NotImplementedError("Independent has no KL divergence here")


class LogNormal(AbstractProbDistribution, strict=True):
    """``exp(X)`` for ``X ~ Normal(loc, scale)``: support (0, inf), 0 itself excluded."""

    loc: Array
    scale: Array

    def __init__(self, loc: ArrayLike, scale: ArrayLike):
        self.loc = jnp.asarray(loc, dtype=float)
        self.scale = jnp.asarray(scale, dtype=float)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(self.loc.shape, self.scale.shape)

    def _z(self, value: Array) -> Array:
        positive = value > 0
        return jnp.where(
            positive, (jnp.log(jnp.where(positive, value, 1.0)) - self.loc) / self.scale, -jnp.inf
        )

    def log_prob(self, value: Array) -> Array:
        value = jnp.asarray(value)
        positive = value > 0
        safe = jnp.where(positive, value, 1.0)
        z = (jnp.log(safe) - self.loc) / self.scale
        lp = -0.5 * z**2 - _LOG_SQRT_2PI - jnp.log(self.scale) - jnp.log(safe)
        return jnp.where(positive, lp, -jnp.inf)

    def cdf(self, value: Array) -> Array:
        return ndtr(self._z(jnp.asarray(value)))

    def log_cdf(self, value: Array) -> Array:
        return jax.scipy.special.log_ndtr(self._z(jnp.asarray(value)))

    def survival_function(self, value: Array) -> Array:
        return ndtr(-self._z(jnp.asarray(value)))

    def log_survival_function(self, value: Array) -> Array:
        return jax.scipy.special.log_ndtr(-self._z(jnp.asarray(value)))

    def icdf(self, value: Array) -> Array:
        return jnp.exp(self.loc + self.scale * ndtri(jnp.asarray(value)))

    def sample(self, key: Key[Array, ""]) -> Array:
        eps = jax.random.normal(key, self.event_shape, dtype=jnp.result_type(self.loc, float))
        return jnp.exp(self.loc + self.scale * eps)

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        x = self.sample(key)
        return x, self.log_prob(x)

    def entropy(self) -> Array:
        return self.loc + 0.5 + _LOG_SQRT_2PI + jnp.log(self.scale)

    def mean(self) -> Array:
        return jnp.exp(self.loc + 0.5 * self.scale**2)

    def variance(self) -> Array:
        return jnp.expm1(self.scale**2) * jnp.exp(2.0 * self.loc + self.scale**2)

    def stddev(self) -> Array:
        return jnp.sqrt(self.variance())

    def mode(self) -> Array:
        return jnp.exp(self.loc - self.scale**2)

    def median(self) -> Array:
        return jnp.exp(self.loc)

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        if not isinstance(other_dist, LogNormal):
            raise NotImplementedError("LogNormal: KL divergence to LogNormal only")
        ratio = self.scale / other_dist.scale
        diff = (self.loc - other_dist.loc) / other_dist.scale
        return 0.5 * (ratio**2 + diff**2 - 1.0) - jnp.log(ratio)


def _is_dist(x: object) -> bool:
    return isinstance(x, AbstractDistribution)


def _total(tree: PyTree) -> Array:
    return functools.reduce(jnp.add, [jnp.sum(v) for v in jax.tree.leaves(tree)])


class Joint(AbstractSampleLogProbDistribution, AbstractProbDistribution, strict=True):
    """Independent distributions over a pytree: samples share the pytree's structure.

    `log_prob`, `log_cdf` and `entropy` sum over the tree; moments and `icdf` map over it.

    Raises:
        ConfigError: the pytree holds no distribution.
    """

    distributions: PyTree[AbstractDistribution]

    def __init__(self, distributions: PyTree[AbstractDistribution]):
        if not jax.tree.leaves(distributions, is_leaf=_is_dist):
            raise ConfigError("distributions: the pytree holds no distribution")
        self.distributions = distributions

    def _map(self, method: str) -> PyTree:
        return jax.tree.map(lambda d: getattr(d, method)(), self.distributions, is_leaf=_is_dist)

    def _map_value(self, method: str, value: PyTree) -> PyTree:
        return jax.tree.map(
            lambda d, v: getattr(d, method)(v), self.distributions, value, is_leaf=_is_dist
        )

    @property
    def event_shape(self) -> PyTree:
        return jax.tree.map(lambda d: d.event_shape, self.distributions, is_leaf=_is_dist)

    def sample(self, key: Key[Array, ""]) -> PyTree:
        leaves, treedef = jax.tree.flatten(self.distributions, is_leaf=_is_dist)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [d.sample(k) for d, k in zip(leaves, keys, strict=True)])

    def log_prob(self, value: PyTree) -> Array:
        return _total(self._map_value("log_prob", value))

    def log_cdf(self, value: PyTree) -> Array:
        return _total(self._map_value("log_cdf", value))

    def cdf(self, value: PyTree) -> Array:
        return jnp.exp(self.log_cdf(value))

    def log_survival_function(self, value: PyTree) -> Array:
        return _total(self._map_value("log_survival_function", value))

    def survival_function(self, value: PyTree) -> Array:
        return jnp.exp(self.log_survival_function(value))

    def icdf(self, value: PyTree) -> PyTree:
        return self._map_value("icdf", value)

    def entropy(self) -> Array:
        return _total(self._map("entropy"))

    def mean(self) -> PyTree:
        return self._map("mean")

    def median(self) -> PyTree:
        return self._map("median")

    def mode(self) -> PyTree:
        return self._map("mode")

    def variance(self) -> PyTree:
        return self._map("variance")

    def stddev(self) -> PyTree:
        return self._map("stddev")

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        if not isinstance(other_dist, Joint):
            raise ConfigError("other_dist: expected a Joint distribution")
        kls = jax.tree.map(
            lambda a, b: a.kl_divergence(b),
            self.distributions,
            other_dist.distributions,
            is_leaf=_is_dist,
        )
        return _total(kls)


class ImproperUniform(AbstractProbDistribution, strict=True):
    """The flat, unnormalised density 1 over the whole real line (cannot be sampled)."""

    shape: tuple[int, ...] = eqx.field(static=True, default=())

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.shape

    def log_prob(self, value: Array) -> Array:
        return jnp.zeros_like(jnp.asarray(value, dtype=float))

    def entropy(self) -> Array:
        return jnp.full(self.shape, jnp.inf)

    def mean(self) -> Array:
        return jnp.zeros(self.shape)

    def median(self) -> Array:
        return jnp.zeros(self.shape)

    def mode(self) -> Array:
        return jnp.zeros(self.shape)

    def variance(self) -> Array:
        return jnp.full(self.shape, jnp.inf)

    def stddev(self) -> Array:
        return jnp.full(self.shape, jnp.inf)

    def _undefined(self, *args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError("ImproperUniform is improper: it has no sample or CDF")

    def sample(self, key: Key[Array, ""]) -> Array:
        return self._undefined()

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        return self._undefined()

    def cdf(self, value: Array) -> Array:
        return self._undefined()

    def log_cdf(self, value: Array) -> Array:
        return self._undefined()

    def survival_function(self, value: Array) -> Array:
        return self._undefined()

    def log_survival_function(self, value: Array) -> Array:
        return self._undefined()

    def icdf(self, value: Array) -> Array:
        return self._undefined()

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        return self._undefined()
