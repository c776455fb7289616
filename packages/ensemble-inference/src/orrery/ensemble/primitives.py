"""Layer 1: pure functions to initialise and advance an ensemble.

Every member is an independent fit; its array leaves sit on a leading ``(E,)``
axis and all members advance together under `equinox.filter_vmap`.
Write your own training loop with these when the runners are not enough.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.random as jr
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from orrery.interface import ConfigError, check_float

from ._checks import as_key, check_member_count, concrete_float
from ._kernels import (
    LogJoint,
    LossAndGrad,
    check_callable,
    check_optimizer,
    loss_and_grad,
    step_members,
)
from .state import EnsembleState

__all__ = ["ensemble_init", "ensemble_loss", "ensemble_step"]


def ensemble_init(
    init_fn: Callable[[PRNGKeyArray], PyTree],
    optimizer: optax.GradientTransformation,
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
    check_callable(init_fn, "init_fn")
    check_optimizer(optimizer)
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
    log_joint: LogJoint,
    *,
    prior_weight: float | Float[ArrayLike, ""] = 1.0,
    scale: float | Float[ArrayLike, ""] = 1.0,
) -> LossAndGrad:
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
    check_callable(log_joint, "log_joint")
    # A traced weight cannot be tested against zero, so only concrete zeros skip the prior;
    # NumPy scalars and 0-d arrays count as concrete (np.float32(0.0) skips it like 0.0).
    weight = concrete_float(prior_weight)
    if weight is not None:
        prior_weight = weight = check_float(weight, "prior_weight")  # ConfigError if NaN/inf
    return loss_and_grad(log_joint, prior_weight=prior_weight, scale=scale, skip_prior=weight == 0)


def ensemble_step(
    state: EnsembleState,
    x_batch: PyTree[ArrayLike],
    y_batch: PyTree[ArrayLike],
    *,
    log_joint: LogJoint,
    optimizer: optax.GradientTransformation,
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
    check_callable(log_joint, "log_joint")
    check_optimizer(optimizer)
    loss_fn = ensemble_loss(log_joint, prior_weight=prior_weight, scale=scale)
    new_state, losses, _ = step_members(
        state, x_batch, y_batch, loss_fn=loss_fn, optimizer=optimizer, on_nonfinite="ignore"
    )
    return new_state, losses
