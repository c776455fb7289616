"""Optimizer and learning-rate schedule construction for `SBITrainer`."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import optax


def make_schedule(
    *,
    learning_rate: float,
    use_cosine_schedule: bool,
    steps_per_epoch: int,
    horizon_epochs: float,
    warmup_fraction: float,
    warmup_epochs: float | None,
    min_learning_rate: float,
) -> optax.Schedule:
    """Return the per-step learning-rate schedule.

    Constant unless ``use_cosine_schedule``: then a linear warm-up from
    ``min_learning_rate`` to ``learning_rate`` over the warm-up steps followed by
    a cosine decay to ``min_learning_rate`` at ``horizon_epochs`` (in epochs),
    after which it stays at the floor.
    """
    if not use_cosine_schedule:
        return optax.constant_schedule(learning_rate)
    total_steps = max(1, math.ceil(horizon_epochs * steps_per_epoch))
    if warmup_epochs is not None:
        warmup_steps = round(warmup_epochs * steps_per_epoch)
    else:
        warmup_steps = round(warmup_fraction * total_steps)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1) if total_steps > 1 else 0
    return optax.warmup_cosine_decay_schedule(
        init_value=min_learning_rate,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=min_learning_rate,
    )


def make_optimizer(
    schedule: optax.Schedule, *, weight_decay: float, gradient_clip_norm: float | None
) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay > 0``), preceded by global-norm clipping if set."""
    if weight_decay > 0:
        base = optax.adamw(schedule, weight_decay=weight_decay)
    else:
        base = optax.adam(schedule)
    if gradient_clip_norm is None:
        return base
    return optax.chain(optax.clip_by_global_norm(gradient_clip_norm), base)


def make_sgd_step(static, optimizer, loss_fn, batch_transform):
    """One optimiser step on one minibatch, shared by every epoch builder.

    Returns:
        ``step(params, opt_state, batch, key) -> (params, opt_state, loss)``; the key
        is split into the loss key and the augmentation key.
    """

    def batch_loss(params, batch, key):
        return loss_fn(eqx.combine(params, static), batch, key)

    grad_fn = jax.value_and_grad(batch_loss)

    def step(params, opt_state, batch, key):
        loss_key, aug_key = jax.random.split(key)
        if batch_transform is not None:
            batch = batch_transform(batch, aug_key)
        loss, grads = grad_fn(params, batch, loss_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step
