"""The per-member kernels shared by `ensemble_step` and the runners.

`primitives` (the public functions), `map` and `vi` all import from here, so no public module
hands a private name to a sibling: the loss-and-gradient builder, the vmapped step that also
reports which members stayed finite, and the finite test and select it is made of.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from orrery.interface import ConfigError

from .state import EnsembleState

LogJoint = Callable[[PyTree, PyTree, PyTree], tuple[Float[ArrayLike, ""], Float[ArrayLike, ""]]]
"""``(params, x_batch, y_batch) -> (log_likelihood, log_prior)``, two scalars."""

LossAndGrad = Callable[[PyTree, PyTree, PyTree], tuple[Float[Array, ""], PyTree]]
"""``(params, x_batch, y_batch) -> (loss, grads)``."""


def check_callable(fn: object, name: str) -> None:
    if not callable(fn):
        raise ConfigError(f"{name}: expected a callable, got {type(fn).__name__}")


def check_optimizer(optimizer: object) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ConfigError(
            "optimizer: expected an optax.GradientTransformation (with init and update), "
            f"got {type(optimizer).__name__}"
        )


def check_log_joint_output(out: object) -> tuple[Float[ArrayLike, ""], Float[ArrayLike, ""]]:
    """The `(log_likelihood, log_prior)` pair, checked while tracing (so checked once)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        what = f"a {type(out).__name__}"
        shape = getattr(out, "shape", None)
        if shape is not None:
            what = f"a single array of shape {tuple(shape)}"
        elif isinstance(out, (tuple, list)):
            what += f" of length {len(out)}"
        raise ConfigError(
            f"log_joint: expected it to return a pair (log_likelihood, log_prior) of scalars, "
            f"got {what}; return (loglik, 0.0) when there is no prior"
        )
    for name, value in zip(("log_likelihood", "log_prior"), out, strict=True):
        shape = tuple(getattr(value, "shape", ()))
        if shape != ():
            raise ConfigError(
                f"log_joint: the {name} it returns must be a scalar, got shape {shape}; "
                "sum over data points (and parameters) inside log_joint"
            )
    return out[0], out[1]


def loss_and_grad(
    log_joint: LogJoint,
    *,
    prior_weight: float | Float[ArrayLike, ""],
    scale: float | Float[ArrayLike, ""],
    skip_prior: bool,
) -> LossAndGrad:
    """``-scale * loglik - prior_weight * logprior`` and its gradient (inexact arrays only)."""

    @eqx.filter_value_and_grad
    def loss_fn(params: PyTree, x_batch: PyTree, y_batch: PyTree) -> Float[Array, ""]:
        loglik, logprior = check_log_joint_output(log_joint(params, x_batch, y_batch))
        loss = -(jnp.asarray(loglik) * scale)
        if not skip_prior:
            loss = loss - prior_weight * jnp.asarray(logprior)
        return loss

    return loss_fn


def all_finite(tree: PyTree) -> Bool[Array, ""]:
    """Whether every inexact array leaf of ``tree`` is finite."""
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    ]
    return jnp.stack(checks).all() if checks else jnp.asarray(True)


def select(ok: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``ok``, else ``old``, leaf by leaf (non-array leaves from ``new``)."""
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b) if eqx.is_array(a) else a, new, old)


def step_members(
    state: EnsembleState,
    x_batch: PyTree,
    y_batch: PyTree,
    *,
    loss_fn: LossAndGrad,
    optimizer: optax.GradientTransformation,
    on_nonfinite: str,
) -> tuple[EnsembleState, Float[Array, " E"], Bool[Array, " E"]]:
    """One vmapped step that reports, per member, whether loss, gradient and update were finite.

    Under ``on_nonfinite == "skip"`` a member with a non-finite loss, gradient
    or update keeps its previous parameters and optimizer state.
    """

    def one(params: PyTree, opt_state: optax.OptState):
        loss, grads = loss_fn(params, x_batch, y_batch)
        updates, new_opt_state = optimizer.update(
            grads, opt_state, eqx.filter(params, eqx.is_inexact_array)
        )
        new_params = eqx.apply_updates(params, updates)
        # a finite gradient can still give a non-finite update (lr * grad overflowing)
        ok = jnp.isfinite(loss) & all_finite(grads) & all_finite(updates)
        if on_nonfinite == "skip":
            new_params = select(ok, new_params, params)
            new_opt_state = select(ok, new_opt_state, opt_state)
        return new_params, new_opt_state, loss, ok

    params, opt_state, losses, ok = eqx.filter_vmap(one)(state.params, state.opt_state)
    return EnsembleState(params, opt_state), losses, ok
