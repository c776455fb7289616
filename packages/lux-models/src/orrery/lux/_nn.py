"""`EquinoxNNTransform`: an Equinox network whose array leaves are model parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from orrery.interface import ConfigError

from ._transform_base import AbstractTransform, default_prior, expand

__all__ = ["EquinoxNNTransform"]


class EquinoxNNTransform(AbstractTransform):
    """An Equinox network whose array leaves are model parameters.

    Args:
        output_size: output dimension.
        nn_factory: ``(in_size, out_size, key) -> eqx.Module``.
        weight_prior: prior of every leaf whose path does not end in ``bias``.
        bias_prior: prior of leaves whose path ends in ``bias``.

    Parameter names are the leaf paths, e.g. ``"layers.0.weight"``.
    """

    nn_factory: Callable[..., Any] = eqx.field(static=True)
    weight_prior: dist.Distribution = eqx.field(static=True)
    bias_prior: dist.Distribution = eqx.field(static=True)

    def __init__(self, output_size, nn_factory, weight_prior=None, bias_prior=None):
        if not callable(nn_factory):
            raise ConfigError("nn_factory: expected a callable (in_size, out_size, key)")
        self.output_size = int(output_size)
        self.nn_factory = nn_factory
        self.weight_prior = weight_prior if weight_prior is not None else default_prior()
        self.bias_prior = bias_prior if bias_prior is not None else default_prior()

    def _template(self, latent_size):
        net = self.nn_factory(int(latent_size), self.output_size, jax.random.key(0))
        params, static = eqx.partition(net, eqx.is_inexact_array)
        leaves = jax.tree_util.tree_leaves_with_path(params)
        names = [_path_name(path) for path, _ in leaves]
        return params, static, names, [leaf for _, leaf in leaves]

    def get_expanded_priors(self, latent_size, data_size=None):
        _, _, names, leaves = self._template(latent_size)
        return {
            n: expand(self.bias_prior if n.endswith("bias") else self.weight_prior, leaf.shape)
            for n, leaf in zip(names, leaves, strict=True)
        }

    def apply(self, latents, **params):
        latents = jnp.asarray(latents)
        tmpl, static, names, _ = self._template(latents.shape[-1])
        missing = [n for n in names if n not in params]
        if missing:
            raise ConfigError(f"EquinoxNNTransform.apply: missing parameter(s) {missing[:3]}")
        treedef = jax.tree_util.tree_structure(tmpl)
        net = eqx.combine(jax.tree_util.tree_unflatten(treedef, [params[n] for n in names]), static)
        return jax.vmap(net)(latents)


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return ".".join(parts)
