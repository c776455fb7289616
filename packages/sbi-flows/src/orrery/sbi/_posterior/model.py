"""The trainable pytree of a flow posterior and the jitted functions that use it.

The flow works in *flow coordinates* ``z``: the posterior's parameter space
(logit of the cube when that space is ``"cube"``) shifted and scaled by fixed
constants. ``_Coordinates`` holds those constants and the exact maps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

from ..encoders import ObservationEncoder
from ..spaces import cube_to_unconstrained, unconstrained_to_cube

#: Cube coordinates are clipped to [eps, 1 - eps] before the logit when building targets.
CUBE_EPS = 1e-6


class _Coordinates(eqx.Module):
    """Exact maps between the posterior's space ``s`` and the flow's coordinates ``z``.

    ``log_dims`` (physical space only; static, so it is not a weight): the
    parameters the flow models in log space (a positive prior's), with the
    log-Jacobian ``-log s`` each.
    """

    kind: str = eqx.field(static=True)
    shift: Array
    scale: Array
    log_dims: tuple[bool, ...] = eqx.field(static=True, default=())

    def space_to_flow(self, s: Float[Array, "... d"]) -> tuple[Array, Array]:
        """``z`` and ``log|dz/ds|`` (summed over the last axis)."""
        log_det = -jnp.log(self.scale).sum() * jnp.ones(s.shape[:-1], s.dtype)
        if self.kind == "cube":
            s, extra = cube_to_unconstrained(s)
            log_det = log_det + extra
        if any(self.log_dims):
            mask = jnp.asarray(self.log_dims)
            logs = jnp.log(jnp.where(mask, s, 1.0))
            s = jnp.where(mask, logs, s)
            log_det = log_det - logs.sum(-1)
        return (s - self.shift) / self.scale, log_det

    def flow_to_space(self, z: Float[Array, "... d"]) -> Array:
        s = z * self.scale + self.shift
        if any(self.log_dims):
            s = jnp.where(jnp.asarray(self.log_dims), jnp.exp(s), s)
        return unconstrained_to_cube(s)[0] if self.kind == "cube" else s


class PosteriorModel(eqx.Module):
    """Encoder plus conditional flow; the object `SBITrainer` trains."""

    #: fixed constants, never changed by the optimiser (see `trainable_spec`)
    fixed_fields: ClassVar[tuple[str, ...]] = ("coords",)

    encoder: ObservationEncoder
    flow: Any
    coords: _Coordinates

    def embed(self, observation: dict) -> Float[Array, " e"]:
        """Context vector of one (normalised) observation."""
        return self.encoder(observation)

    def flow_log_prob(self, z: Array, embeddings: Array) -> Array:
        """Log-density of flow coordinates given context vectors (batched)."""
        return self.flow.log_prob(z, condition=embeddings)


def npe_loss(model: PosteriorModel, batch: Any, key: Any = None) -> Array:
    """Mean negative log-likelihood of the flow coordinates ``batch.parameters``."""
    embeddings = jax.vmap(model.embed)(batch.observations)
    return -jnp.mean(model.flow_log_prob(batch.parameters, embeddings))


@eqx.filter_jit
def embed_batch(model: PosteriorModel, observations: dict) -> Array:
    return jax.vmap(model.embed)(observations)


@eqx.filter_jit
def sample_space(model: PosteriorModel, key: Array, embedding: Array, n: int) -> Array:
    z = model.flow.sample(key, (n,), condition=embedding)
    return model.coords.flow_to_space(z)


@eqx.filter_jit
def batch_sample_space(model: PosteriorModel, keys: Array, embeddings: Array, n: int) -> Array:
    def one(key, emb):
        return model.coords.flow_to_space(model.flow.sample(key, (n,), condition=emb))

    return jax.vmap(one)(keys, embeddings)


@eqx.filter_jit
def log_prob_space(model: PosteriorModel, embedding: Array, s: Array) -> Array:
    z, log_det = model.coords.space_to_flow(s)
    cond = jnp.broadcast_to(embedding, (s.shape[0], embedding.shape[-1]))
    return model.flow.log_prob(z, condition=cond) + log_det


@eqx.filter_jit
def closure_metrics(model: PosteriorModel, z: Array, observations: dict, key: Array) -> dict:
    """Inverse-forward closure, log-det closure and cube-edge hit rate on a batch.

    ``flow.bijection`` maps latent -> flow coordinates; the data are pushed to the
    latent space and back, and the two log-determinants must cancel.
    """
    emb = jax.vmap(model.embed)(observations)
    bij = model.flow.bijection
    u, ld_inv = jax.vmap(bij.inverse_and_log_det)(z, emb)
    z_back, ld_fwd = jax.vmap(bij.transform_and_log_det)(u, emb)
    draws = jax.vmap(lambda k, c: model.flow.sample(k, condition=c))(jr.split(key, z.shape[0]), emb)
    s = model.coords.flow_to_space(draws)
    if model.coords.kind == "physical":
        edge = jnp.zeros(())
    else:
        cube = s if model.coords.kind == "cube" else unconstrained_to_cube(s)[0]
        edge = jnp.mean(jnp.any((cube <= 0.0) | (cube >= 1.0), axis=-1))
    return {
        "inverse_forward_max_abs_error": jnp.max(jnp.abs(z_back - z)),
        "inverse_forward_logdet_closure_max_abs_error": jnp.max(jnp.abs(ld_inv + ld_fwd)),
        "cube_edge_hit_rate": edge,
    }


def flow_targets(space: Any, shift: np.ndarray, scale: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Flow coordinates of physical parameters (NumPy, float64), used as training targets.

    Cube coordinates are clipped to ``[CUBE_EPS, 1 - CUBE_EPS]`` so that a value on a
    bound keeps a finite logit.
    """
    s = np.asarray(theta, np.float64)
    log_dims = np.asarray(getattr(space, "log_dims", ()) or [False] * s.shape[-1])
    if log_dims.any():  # a positive prior's parameters, modelled in log space
        s = np.where(log_dims, np.log(np.where(log_dims, s, 1.0)), s)
    if space.kind != "physical":
        u = (s - space.lower) / (space.upper - space.lower)
        u = np.clip(u, CUBE_EPS, 1 - CUBE_EPS)
        s = np.log(u) - np.log1p(-u)
    return (s - shift) / scale
