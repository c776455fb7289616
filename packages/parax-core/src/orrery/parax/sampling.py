"""Drawing modules from their parameter distributions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree

from orrery.interface import ConfigError, Draws, as_int_seed, check_positive_int

from ._groups import param_groups
from ._naming import ParamIndex
from .tree import combine, partition

if TYPE_CHECKING:
    from .module import Module

__all__ = ["draws_from", "func_samples", "sampled"]

M = TypeVar("M", bound="Module")


def _clip(sample: jax.Array, bounds: jax.Array | None) -> jax.Array:
    if bounds is None:
        return sample
    return jnp.clip(sample, bounds[..., 0], bounds[..., 1])


def sampled(module: M, key: PRNGKeyArray | None = None, **kwargs: object) -> M:
    """A copy of `module` whose free parameters are drawn from their distributions.

    Parameters in an explicit `ParameterGroup` with a joint distribution are drawn
    jointly; others from their own distribution; parameters without any distribution
    keep their value. Draws are in physical space, clipped to bounds, and mapped to
    latent space through the inverse transform. Traceable (use under `jax.vmap`).

    Args:
        module: an `orrery.parax.Module`.
        key: JAX PRNG key (None draws a fresh seed).
    """
    if kwargs:
        raise ConfigError(f"sampled: unexpected keyword(s) {sorted(kwargs)}")
    if key is None:
        key = jax.random.key(as_int_seed(None))
    idx = ParamIndex(module)
    groups = [
        (g.param_names, d)
        for g in param_groups(module, False, True)
        if (d := g.distribution) is not None
    ]
    keys = jax.random.split(key, len(idx.positions) + len(groups) + 1)
    new = {}
    for k, p in enumerate(idx.params()):
        if p.fixed or p.distribution is None:
            continue
        draw = jnp.broadcast_to(p.distribution.sample(keys[k]), p.shape).astype(p.latent.dtype)
        new[k] = p.with_value(_clip(draw, p.bounds))
    out = idx.rebuild(new)
    if groups:
        flat = out.named_flat_params()
        updates = {}
        for j, (names, dist) in enumerate(groups):
            draw = jnp.reshape(dist.sample(keys[len(idx.positions) + j]), (-1,))
            for i, name in enumerate(names):
                updates[name] = _clip(draw[i], flat[name].bounds)
        out = out.with_params(updates)
    return out


def func_samples(
    module: M,
    func: Callable[[M, PyTree], PyTree[Array]],
    args: PyTree,
    *,
    key: PRNGKeyArray,
    num_samples: int = 1000,
) -> PyTree[Array]:
    """Evaluate ``func(sample, args)`` on `num_samples` sampled modules.

    Args:
        module: the module whose free parameters are sampled.
        func: ``func(module, args) -> pytree``.
        args: passed to `func`.
        key: a JAX PRNG key.
        num_samples: how many samples (a positive int).

    Returns:
        Array of shape ``(num_samples, *func_output_shape)`` (pytrees stack leafwise).
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    keys = jax.random.split(key, num_samples)
    return _func_samples(module, func, args, keys)


@eqx.filter_jit
def _func_samples(
    module: M, func: Callable[[M, PyTree], PyTree[Array]], args: PyTree, keys: Array
) -> PyTree[Array]:
    return jax.vmap(lambda k: func(sampled(module, k), args))(keys)


def _flat_values(module: Module, args: PyTree) -> dict[str, Array] | dict[str, float]:
    return module.named_flat_param_values()


@eqx.filter_jit
def _batched_values(dyn: PyTree, static: PyTree) -> dict[str, Array]:
    return jax.vmap(lambda d: combine(d, static).named_flat_param_values())(dyn)


def draws_from(
    module: Module,
    *,
    key: PRNGKeyArray | None = None,
    num_samples: int = 1000,
    batched: bool = False,
) -> Draws:
    """Free flat parameters as `orrery.interface.Draws` (one chain).

    Args:
        module: the module to sample (or, with ``batched=True``, a module whose
            parameter arrays carry a leading sample axis, e.g. from `jax.vmap`).
        key: PRNG key for sampling (required unless `batched`).
        num_samples: number of draws.
        batched: read existing samples from the leading axis instead of sampling.
    """
    if batched:
        dyn, static = partition(module, include_fixed=False)
        values = _batched_values(dyn, static)
    else:
        if key is None:
            raise ConfigError("draws_from: key is required unless batched=True")
        num_samples = check_positive_int(num_samples, "num_samples")
        keys = jax.random.split(key, num_samples)
        values = _func_samples(module, _flat_values, None, keys)
    return Draws.from_dict({n: np.asarray(v) for n, v in values.items()}, has_chains=False)
