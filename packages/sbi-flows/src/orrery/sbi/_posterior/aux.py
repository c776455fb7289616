"""Auxiliary heads on the observation embedding, trained alongside the flow.

Two linear heads read the context vector ``c`` of an observation:

* parameter head ``mu(c)``: predicts the flow-coordinate parameters ``z`` (the
  standardised parameters the flow models); loss ``mean((mu(c) - z)^2)``,
  weighted by ``aux_parameter_loss_weight``;
* scale head ``s(c)``: predicts the log-scale of the residual
  ``r = z - stop_gradient(mu(c))`` (``mu = 0`` without the parameter head); loss the
  Gaussian negative log-likelihood ``mean(0.5 * (r / exp(s))^2 + s)``, weighted by
  ``aux_scale_loss_weight``.

Both push the encoder towards embeddings that carry the parameters' location and
uncertainty. The heads exist only during training: ``fit`` keeps the posterior
model and drops them, so sampling, densities and saved artifacts are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array


class AuxTrainingModel(eqx.Module):
    """A posterior model plus its auxiliary heads (what the trainer optimises)."""

    model: Any
    parameter_head: eqx.nn.Linear | None
    scale_head: eqx.nn.Linear | None


def unwrap(model: Any) -> Any:
    """The posterior model inside an `AuxTrainingModel` (else ``model``)."""
    return model.model if isinstance(model, AuxTrainingModel) else model


def aux_loss(
    heads: AuxTrainingModel, batch: Any, *, parameter_weight: float, scale_weight: float
) -> Array:
    """Weighted auxiliary losses of a batch whose parameters are in flow coordinates."""
    emb = jax.vmap(heads.model.embed)(batch.observations)
    z = batch.parameters
    total = jnp.zeros(())
    mu = jnp.zeros_like(z)
    if heads.parameter_head is not None:
        mu = jax.vmap(heads.parameter_head)(emb)
        total = total + parameter_weight * jnp.mean((mu - z) ** 2)
    if heads.scale_head is not None:
        log_s = jax.vmap(heads.scale_head)(emb)
        r = z - jax.lax.stop_gradient(mu)
        total = total + scale_weight * jnp.mean(0.5 * (r * jnp.exp(-log_s)) ** 2 + log_s)
    return total


def with_aux_heads(
    model: Any,
    loss_fn: Callable[..., Array],
    val_loss_fn: Callable[..., Array] | None,
    *,
    parameter_weight: float,
    scale_weight: float,
    key: Array,
) -> tuple[Any, Callable[..., Array], Callable[..., Array] | None]:
    """Attach the heads whose weight is non-zero; nothing changes when both are 0.

    Returns:
        ``(train_model, loss_fn, val_loss_fn)``: the training loss adds the weighted
        auxiliary losses; the validation loss is the original one on the inner model.
    """
    if parameter_weight == 0 and scale_weight == 0:
        return model, loss_fn, val_loss_fn
    emb_dim = model.flow.cond_shape[0]
    dim = model.flow.shape[0]
    k_p, k_s = jr.split(key)
    wrapped = AuxTrainingModel(
        model,
        eqx.nn.Linear(emb_dim, dim, key=k_p) if parameter_weight else None,
        eqx.nn.Linear(emb_dim, dim, key=k_s) if scale_weight else None,
    )
    base_val = val_loss_fn or loss_fn

    def loss(m: AuxTrainingModel, batch: Any, key: Any = None) -> Array:
        extra = aux_loss(m, batch, parameter_weight=parameter_weight, scale_weight=scale_weight)
        return loss_fn(m.model, batch, key) + extra

    def val_loss(m: AuxTrainingModel, batch: Any, key: Any = None) -> Array:
        return base_val(m.model, batch, key)

    return wrapped, loss, val_loss
