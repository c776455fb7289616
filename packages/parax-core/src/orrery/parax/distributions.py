"""Distributions missing from distreqx 0.0.3: `Joint`, and `sample` with a sample shape."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from distreqx.distributions import (
    AbstractDistribution,
    AbstractProbDistribution,
    AbstractSampleLogProbDistribution,
)
from jaxtyping import Array, ArrayLike, Key, PyTree

from orrery.interface import ConfigError

from ._errors import ConfigTypeError

__all__ = ["Joint", "sample"]


def sample(
    distribution: AbstractDistribution, key: Key[Array, ""], sample_shape: int | tuple = ()
) -> PyTree[Array]:
    """Draw ``sample_shape`` independent samples (vmapped over split keys).

    Args:
        distribution: a distreqx distribution.
        key: a JAX PRNG key.
        sample_shape: the leading shape of the result (an int or a tuple; ``()`` for one).

    Returns:
        The samples, shaped ``(*sample_shape, *event_shape)`` (a pytree for `Joint`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from distreqx.distributions import Normal
        >>> sample(Normal(jnp.asarray(0.0), jnp.asarray(1.0)), jax.random.key(0), (100, 2)).shape
        (100, 2)
    """
    shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
    n = math.prod(shape)
    if shape == ():
        return distribution.sample(key)
    draws = jax.vmap(distribution.sample)(jax.random.split(key, n))
    return jax.tree_util.tree_map(lambda a: a.reshape(*shape, *a.shape[1:]), draws)


def _sum(tree: PyTree[ArrayLike]) -> Array:
    sums = [jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    return functools.reduce(operator.add, sums) if sums else jnp.asarray(0.0)


class Joint(AbstractSampleLogProbDistribution, AbstractProbDistribution, strict=True):
    """Independent joint distribution over named components.

    Samples are dicts ``{name: sample}``; `log_prob` sums the component log-densities
    (summing over elements of vector-valued components).

    Args:
        distributions: mapping of names to distreqx distributions.

    Raises:
        ConfigError: a component that is not a distreqx distribution (also a `TypeError`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from distreqx.distributions import Normal, Uniform
        >>> joint = Joint({"a": Normal(jnp.asarray(0.0), jnp.asarray(1.0)),
        ...                "b": Uniform(jnp.asarray(0.0), jnp.asarray(2.0))})
        >>> draws = joint.sample_n(jax.random.key(0), 500)
        >>> {k: v.shape for k, v in draws.items()}
        {'a': (500,), 'b': (500,)}
        >>> round(float(joint.log_prob({"a": 0.0, "b": 1.0})), 4)  # log N(0) + log(1/2)
        -1.6121
    """

    distributions: dict[str, AbstractDistribution]

    def __init__(self, distributions: Mapping[str, AbstractDistribution]):
        dists = dict(distributions)
        for k, d in dists.items():
            if not isinstance(d, AbstractDistribution):
                raise ConfigTypeError(
                    f"distributions[{k!r}]: expected a distreqx distribution, "
                    f"got {type(d).__name__}"
                )
        self.distributions = dists

    def _map(self, method: str, *args: PyTree) -> dict[str, PyTree]:
        return {k: getattr(d, method)(*args) for k, d in self.distributions.items()}

    def _map_values(self, method: str, value: Mapping[str, PyTree]) -> dict[str, PyTree]:
        return {k: getattr(d, method)(value[k]) for k, d in self.distributions.items()}

    def log_prob(self, value: Mapping[str, Array]) -> Array:
        """Sum of component log-densities."""
        return _sum(self._map_values("log_prob", value))

    @property
    def event_shape(self) -> dict[str, tuple[int, ...]]:
        return {k: d.event_shape for k, d in self.distributions.items()}

    def sample(self, key: Key[Array, ""]) -> dict[str, Array]:
        keys = jax.random.split(key, max(len(self.distributions), 1))
        return {k: d.sample(keys[i]) for i, (k, d) in enumerate(self.distributions.items())}

    def sample_n(self, key: Key[Array, ""], n: int) -> dict[str, Array]:
        """`n` independent samples, each component with a leading axis of length `n`."""
        return jax.vmap(self.sample)(jax.random.split(key, n))

    def entropy(self) -> Array:
        return _sum(self._map("entropy"))

    def icdf(self, value: Mapping[str, Array]) -> dict[str, Array]:
        return self._map_values("icdf", value)

    def log_cdf(self, value: Mapping[str, Array]) -> dict[str, Array]:
        return self._map_values("log_cdf", value)

    def cdf(self, value: Mapping[str, Array]) -> dict[str, Array]:
        return self._map_values("cdf", value)

    def survival_function(self, value: Mapping[str, Array]) -> dict[str, Array]:
        return self._map_values("survival_function", value)

    def log_survival_function(self, value: Mapping[str, Array]) -> dict[str, Array]:
        return self._map_values("log_survival_function", value)

    def mean(self) -> dict[str, Array]:
        return self._map("mean")

    def median(self) -> dict[str, Array]:
        return self._map("median")

    def variance(self) -> dict[str, Array]:
        return self._map("variance")

    def stddev(self) -> dict[str, Array]:
        return self._map("stddev")

    def mode(self) -> dict[str, Array]:
        return self._map("mode")

    def kl_divergence(self, other_dist: AbstractDistribution, **kwargs: object) -> Array:
        """Sum of component KL divergences to another `Joint` with the same names."""
        if not isinstance(other_dist, Joint) or set(other_dist.distributions) != set(
            self.distributions
        ):
            raise ConfigError("kl_divergence: other_dist must be a Joint with the same names")
        return _sum(
            {
                k: d.kl_divergence(other_dist.distributions[k], **kwargs)
                for k, d in self.distributions.items()
            }
        )
