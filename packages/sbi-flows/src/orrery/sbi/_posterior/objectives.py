"""Training-only batch transforms (noise injection) and the amortized-VI (ELBO) loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._splits import PosteriorBatch
from ..spaces import unconstrained_to_cube


def make_batch_transform(
    *,
    embedding_noise_std: float,
    embedding_noise_min_scale: float,
    parameter_noise_floor: float,
    flow_scale: np.ndarray,
) -> Callable[[Any, jax.Array], Any] | None:
    """Build ``f(batch, key) -> batch`` adding training-only noise, or ``None`` when off.

    Observation noise (normalised units): for a block with uncertainties ``e``,
    ``std = embedding_noise_std * max(e, embedding_noise_min_scale * mean(e))``
    (the mean over the block's features); without uncertainties a flat
    ``embedding_noise_std``. Parameter jitter: ``parameter_noise_floor`` in the
    unconstrained (or physical) coordinates the flow models, i.e. divided by the
    flow's standardisation scale.
    """
    if embedding_noise_std <= 0 and parameter_noise_floor <= 0:
        return None
    jitter = jnp.asarray(parameter_noise_floor / np.asarray(flow_scale), jnp.float32)

    def transform(batch: PosteriorBatch, key: jax.Array) -> PosteriorBatch:
        k_theta, k_obs = jr.split(key)
        params = batch.parameters
        if parameter_noise_floor > 0:
            params = params + jitter * jr.normal(k_theta, params.shape, params.dtype)
        observations = batch.observations
        if embedding_noise_std > 0:
            observations = {}
            keys = jr.split(k_obs, len(batch.observations))
            for k, (name, block) in zip(keys, batch.observations.items(), strict=True):
                values = block["values"]
                unc = block.get("uncertainties")
                if unc is None:
                    std = embedding_noise_std
                else:
                    floor = embedding_noise_min_scale * jnp.mean(unc, axis=-1, keepdims=True)
                    std = embedding_noise_std * jnp.maximum(unc, floor)
                noisy = dict(block)
                noisy["values"] = values + std * jr.normal(k, values.shape, values.dtype)
                observations[name] = noisy
        return PosteriorBatch(params, observations)

    return transform


def make_elbo_loss(
    log_likelihood_fn: Callable[[jax.Array, Any], jax.Array], num_samples: int = 1
) -> Callable[[Any, Any, jax.Array], jax.Array]:
    """Negative amortized ELBO for a cube-space posterior with a uniform prior.

    ``-E_q[log p(x | u) - log q(u | x)]`` estimated with ``num_samples``
    reparameterised draws ``u = sigmoid(shift + scale * z)`` of the flow per
    observation; ``log p(u) = 0`` on the cube.
    """

    def loss(model: Any, batch: PosteriorBatch, key: jax.Array) -> jax.Array:
        emb = jax.vmap(model.embed)(batch.observations)
        keys = jr.split(key, emb.shape[0])

        def draw(k, c):
            return model.flow.sample_and_log_prob(k, (num_samples,), condition=c)

        z, log_q_z = jax.vmap(draw)(keys, emb)  # (b, S, d), (b, S)
        coords = model.coords
        u, log_du_dv = unconstrained_to_cube(z * coords.scale + coords.shift)
        log_q_u = log_q_z - log_du_dv - jnp.log(coords.scale).sum()
        log_lik = jnp.stack(
            [log_likelihood_fn(u[:, s], batch.observations) for s in range(num_samples)], axis=1
        )
        return -jnp.mean(log_lik - log_q_u)

    return loss
