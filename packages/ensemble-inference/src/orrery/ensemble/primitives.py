"""Layer 1: pure functions to initialise and advance an ensemble.

Every member is an independent fit; its array leaves sit on a leading ``(E,)``
axis and all members advance together under `equinox.filter_vmap`.
Write your own training loop with these when the runners are not enough.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree

from orrery.interface import ConfigError, check_float

from ._checks import as_key, check_member_count, concrete_float
from .state import EnsembleState

__all__ = ["ensemble_init", "ensemble_loss", "ensemble_step"]

LogJoint = Callable[[PyTree, Any, Any], tuple[Float[Array, ""], Float[Array, ""]]]


def ensemble_init(
    init_fn: Callable[[PRNGKeyArray], PyTree],
    optimizer: Any,
    *,
    ensemble_size: int,
    seed: PRNGKeyArray,
) -> EnsembleState:
    """Initialise ``ensemble_size`` members and their optimizer states.

    Args:
        init_fn: ``key -> params``, called once per member (under vmap).
        optimizer: an ``optax.GradientTransformation``; its state is built on
            ``eqx.filter(params, eqx.is_inexact_array)``.
        ensemble_size: the number of members ``E``.
        seed: a PRNG key, split into ``E`` member keys.

    Returns:
        An `EnsembleState` whose array leaves have a leading ``(E,)`` axis.

    Example:
        >>> import jax, optax
        >>> state = ensemble_init(lambda k: {"w": jax.random.normal(k, (3,))},
        ...                       optax.adam(1e-2), ensemble_size=4, seed=jax.random.key(0))
        >>> state.params["w"].shape
        (4, 3)
    """
    ensemble_size = check_member_count(ensemble_size)
    _check_callable(init_fn, "init_fn")
    _check_optimizer(optimizer)
    keys = jr.split(as_key(seed), ensemble_size)

    def one(key):
        params = init_fn(key)
        return params, optimizer.init(eqx.filter(params, eqx.is_inexact_array))

    params, opt_state = eqx.filter_vmap(one)(keys)
    _warn_number_leaves(params)
    return EnsembleState(params, opt_state)


def _warn_number_leaves(params: PyTree) -> None:
    """Warn about Python numbers among the parameters: they are constants, never optimised."""
    found = [
        f"params{jax.tree_util.keystr(path)} = {leaf!r}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if isinstance(leaf, (int, float, complex)) and not isinstance(leaf, bool)
    ]
    if found:
        warnings.warn(
            f"init_fn returned Python number leaves ({', '.join(found)}); they are shared "
            "constants and will not be optimised. Return arrays to fit them, e.g. "
            "jnp.asarray(0.0) or jnp.zeros(()) instead of 0.0.",
            UserWarning,
            stacklevel=3,
        )


def ensemble_loss(
    log_joint: LogJoint, *, prior_weight: float = 1.0, scale: float = 1.0
) -> Callable[[PyTree, Any, Any], tuple[Float[Array, ""], PyTree]]:
    """Build the per-member loss-and-gradient function from a log joint.

    The loss is ``-scale * loglik - prior_weight * logprior``. With
    ``prior_weight == 0`` the prior term is dropped altogether (maximum
    likelihood), so ``log_joint`` may return a placeholder ``0.0`` for it.

    Args:
        log_joint: ``(params, x_batch, y_batch) -> (loglik, logprior)``.
        prior_weight: weight of the log prior; ``0`` for MLE, ``1`` for MAP.
        scale: weight of the log likelihood; ``N / |B|`` makes a minibatch
            loss an unbiased estimate of the full-data one.

    Returns:
        ``loss_fn(params, x_batch, y_batch) -> (loss, grads)``, an
        `equinox.filter_value_and_grad` (gradients for inexact arrays only).
    """
    _check_callable(log_joint, "log_joint")
    # A traced weight cannot be tested against zero, so only concrete zeros skip the prior;
    # NumPy scalars and 0-d arrays count as concrete (np.float32(0.0) skips it like 0.0).
    weight = concrete_float(prior_weight)
    if weight is not None:
        prior_weight = weight = check_float(weight, "prior_weight")  # ConfigError if NaN/inf
    skip_prior = weight == 0

    @eqx.filter_value_and_grad
    def loss_fn(params, x_batch, y_batch):
        loglik, logprior = _check_log_joint_output(log_joint(params, x_batch, y_batch))
        loss = -scale * loglik
        if not skip_prior:
            loss = loss - prior_weight * logprior
        return loss

    return loss_fn


def _check_callable(fn: Any, name: str) -> None:
    if not callable(fn):
        raise ConfigError(f"{name}: expected a callable, got {type(fn).__name__}")


def _check_optimizer(optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ConfigError(
            "optimizer: expected an optax.GradientTransformation (with init and update), "
            f"got {type(optimizer).__name__}"
        )


def _check_log_joint_output(out: Any) -> tuple[Any, Any]:
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


def _all_finite(tree: PyTree) -> Bool[Array, ""]:
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    ]
    return jnp.stack(checks).all() if checks else jnp.asarray(True)


def _select(ok: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b) if eqx.is_array(a) else a, new, old)


def _step(
    state: EnsembleState,
    x_batch: Any,
    y_batch: Any,
    *,
    log_joint: LogJoint,
    optimizer: Any,
    prior_weight: float,
    scale: float,
    on_nonfinite: str,
) -> tuple[EnsembleState, Float[Array, " E"], Bool[Array, " E"]]:
    """One vmapped step that also reports, per member, whether loss and gradient were finite.

    Under ``on_nonfinite == "skip"`` a member with a non-finite loss or
    gradient keeps its previous parameters and optimizer state.
    """
    loss_fn = ensemble_loss(log_joint, prior_weight=prior_weight, scale=scale)

    def one(params, opt_state):
        loss, grads = loss_fn(params, x_batch, y_batch)
        updates, new_opt_state = optimizer.update(
            grads, opt_state, eqx.filter(params, eqx.is_inexact_array)
        )
        new_params = eqx.apply_updates(params, updates)
        ok = jnp.isfinite(loss) & _all_finite(grads)
        if on_nonfinite == "skip":
            new_params = _select(ok, new_params, params)
            new_opt_state = _select(ok, new_opt_state, opt_state)
        return new_params, new_opt_state, loss, ok

    params, opt_state, losses, ok = eqx.filter_vmap(one)(state.params, state.opt_state)
    return EnsembleState(params, opt_state), losses, ok


def ensemble_step(
    state: EnsembleState,
    x_batch: Any,
    y_batch: Any,
    *,
    log_joint: LogJoint,
    optimizer: Any,
    prior_weight: float = 1.0,
    scale: float = 1.0,
) -> tuple[EnsembleState, Float[Array, " E"]]:
    """Advance every member by one optimizer step on the same batch.

    Args:
        state: the current `EnsembleState`.
        x_batch: inputs shared by all members.
        y_batch: targets shared by all members.
        log_joint: ``(params, x, y) -> (loglik, logprior)``.
        optimizer: the same ``optax.GradientTransformation`` given to
            `ensemble_init` (a stateful schedule must be the same instance).
        prior_weight: weight of the log prior (``0`` for MLE).
        scale: weight of the log likelihood (``N / |B|`` for minibatches).

    Returns:
        ``(new_state, losses)``; ``losses`` has shape ``(E,)`` and holds each
        member's loss before the update.

    A building block, free of checks on values so it can run inside
    ``jax.jit``: a batch holding NaN or inf gives NaN losses and NaN
    parameters (the step is applied as computed). `EnsembleMAP` skips or
    refuses such steps (``on_nonfinite``) and its ``run`` checks the data.
    """
    if not isinstance(state, EnsembleState):
        raise ConfigError(
            f"state: expected an EnsembleState (from ensemble_init), got {type(state).__name__}"
        )
    _check_callable(log_joint, "log_joint")
    _check_optimizer(optimizer)
    new_state, losses, _ = _step(
        state,
        x_batch,
        y_batch,
        log_joint=log_joint,
        optimizer=optimizer,
        prior_weight=prior_weight,
        scale=scale,
        on_nonfinite="ignore",
    )
    return new_state, losses
