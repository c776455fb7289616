"""Layer 3: one-call fits and vmapped prediction."""

from __future__ import annotations

import cmath
from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree
from numpyro.infer.svi import SVIState

from orrery.interface import ConfigError, ShapeError, ValueDomainError

from ._checks import check_all_finite, check_learning_rate
from ._sharding import Devices, put_members, put_replicated, resolve_shardings
from .map import EnsembleMAP
from .primitives import LogJoint
from .state import EnsembleResult, EnsembleState
from .vi import EnsembleVI, NumpyroOptimizer

__all__ = ["ensemble_map", "ensemble_predict", "ensemble_vi"]


def _check_inputs_finite(x_new: PyTree[ArrayLike]) -> None:
    """`ValueDomainError` naming the leaf of ``x_new`` (array or Python number) that is NaN/inf."""
    check_all_finite(x_new, "x_new")
    for path, leaf in jax.tree.leaves_with_path(x_new):
        if isinstance(leaf, (float, complex)) and not cmath.isfinite(leaf):
            raise ValueDomainError(
                f"x_new{jax.tree_util.keystr(path)}: expected finite values, got {leaf}"
            )


def _split_data(data: object) -> tuple[PyTree[ArrayLike], PyTree[ArrayLike]]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ShapeError(f"data: expected a pair (x, y), got {type(data).__name__}")
    return data[0], data[1]


def ensemble_map(
    log_joint: LogJoint,
    init_fn: Callable[[PRNGKeyArray], PyTree],
    *,
    ensemble_size: int,
    num_epochs: int,
    data: tuple[PyTree[ArrayLike], ArrayLike],
    seed: PRNGKeyArray | int,
    batch_size: int | None = None,
    learning_rate: float | optax.Schedule = 5e-3,
    prior_weight: float = 1.0,
    optimizer: optax.GradientTransformation | None = None,
    on_nonfinite: str = "skip",
    devices: Devices = None,
    init_state: EnsembleState | EnsembleResult | None = None,
    progress: bool | None = None,
) -> EnsembleResult:
    """Fit an ensemble of MAP (``prior_weight=1``) or MLE (``0``) members in one call.

    Same as ``EnsembleMAP(log_joint, init_fn, optimizer, ensemble_size,
    prior_weight, on_nonfinite, devices).run(seed, num_epochs, *data,
    batch_size=batch_size)``.

    Args:
        log_joint: ``(params, x_batch, y_batch) -> (loglik, logprior)``.
        init_fn: ``key -> params`` for one member.
        ensemble_size: the number of members ``E``.
        num_epochs: optimizer steps per member.
        data: the pair ``(x, y)``.
        seed: a PRNG key or an int seed.
        batch_size: minibatch size, ``None`` for full batch.
        learning_rate: learning rate of the default ``optax.adam``.
        prior_weight: ``1`` for MAP, ``0`` for MLE.
        optimizer: an ``optax.GradientTransformation`` replacing the default Adam.
        on_nonfinite: ``"skip"``, ``"ignore"`` or ``"raise"`` (see `EnsembleMAP`).
        devices: ``None``, ``"all"`` or devices to split the members over.
        init_state: continue from an earlier state or result.
        progress: show a tqdm progress bar.

    Returns:
        An `EnsembleResult`, which unpacks as ``params_stacked, losses``
        with losses ``(E, num_epochs)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.linspace(-1.0, 1.0, 20)
        >>> y = 2.0 * x + 0.5
        >>> def log_joint(p, x, y):
        ...     loglik = -0.5 * jnp.sum((y - p["a"] * x - p["b"]) ** 2) / 0.1**2
        ...     return loglik, -0.5 * (p["a"] ** 2 + p["b"] ** 2)
        >>> def init_fn(key):
        ...     return {"a": jax.random.normal(key), "b": jnp.zeros(())}
        >>> params, losses = ensemble_map(log_joint, init_fn, ensemble_size=4, num_epochs=500,
        ...                               data=(x, y), seed=0, learning_rate=0.05)
        >>> params["a"].shape, losses.shape
        ((4,), (4, 500))
        >>> bool(jnp.allclose(params["a"], 2.0, atol=0.05))
        True
    """
    x, y = _split_data(data)
    if optimizer is None:
        optimizer = optax.adam(check_learning_rate(learning_rate))
    runner = EnsembleMAP(
        log_joint,
        init_fn,
        optimizer,
        ensemble_size=ensemble_size,
        prior_weight=prior_weight,
        on_nonfinite=on_nonfinite,
        devices=devices,
    )
    return runner.run(
        seed, num_epochs, x, y, batch_size=batch_size, init_state=init_state, progress=progress
    )


def ensemble_vi(
    model_fn: Callable[..., object],
    guide_fn: Callable[..., object],
    *,
    ensemble_size: int,
    num_epochs: int,
    data: tuple[PyTree[ArrayLike], PyTree[ArrayLike]],
    seed: PRNGKeyArray | int,
    kl_weight: float = 1.0,
    learning_rate: float | optax.Schedule = 5e-3,
    optimizer: NumpyroOptimizer | optax.GradientTransformation | None = None,
    num_particles: int = 1,
    on_nonfinite: str = "skip",
    devices: Devices = None,
    init_state: SVIState | EnsembleResult | None = None,
    progress: bool | None = None,
) -> EnsembleResult:
    """Fit an ensemble of numpyro SVI members in one call.

    Args:
        model_fn: a numpyro model called as ``model_fn(x, y)``.
        guide_fn: the matching guide.
        ensemble_size: the number of members ``E``.
        num_epochs: SVI steps per member.
        data: the pair ``(x, y)``, passed positionally to model and guide.
        seed: a PRNG key or an int seed.
        kl_weight: the KL weight ``β`` of the tempered ELBO (``1``: plain ELBO).
        learning_rate: learning rate of the default ``numpyro.optim.Adam``.
        optimizer: a numpyro optimizer or an optax transform.
        num_particles: Monte Carlo particles per ELBO estimate.
        on_nonfinite: ``"skip"``, ``"ignore"`` or ``"raise"``.
        devices: ``None``, ``"all"`` or devices to split the members over.
        init_state: continue from an earlier state or result.
        progress: show a tqdm progress bar.

    Returns:
        An `EnsembleResult` that unpacks as ``guide_params_stacked, losses``.
    """
    x, y = _split_data(data)
    check_all_finite(x, "x")
    check_all_finite(y, "y")
    if optimizer is None:
        from numpyro.optim import Adam

        chosen: NumpyroOptimizer | optax.GradientTransformation = Adam(
            check_learning_rate(learning_rate)
        )
    else:
        chosen = optimizer
    runner = EnsembleVI(
        model_fn,
        guide_fn,
        chosen,
        ensemble_size=ensemble_size,
        kl_weight=kl_weight,
        num_particles=num_particles,
        on_nonfinite=on_nonfinite,
        devices=devices,
    )
    return runner.run(seed, num_epochs, x, y, init_state=init_state, progress=progress)


def ensemble_predict(
    params_stacked: PyTree,
    predict_fn: Callable[[PyTree, PyTree[ArrayLike]], Array],
    x_new: PyTree[ArrayLike],
    *,
    devices: Devices = None,
) -> Array:
    """Evaluate ``predict_fn(params, x_new)`` for every member.

    Array leaves of ``params_stacked`` are mapped over their leading member
    axis, non-array leaves (an activation function) are shared, and ``x_new``
    is the same for every member.

    Args:
        params_stacked: parameters from a fit, array leaves ``(E, ...)``.
        predict_fn: ``(params, x) -> prediction`` for one member.
        x_new: inputs shared by all members.
        devices: ``None``, ``"all"`` or devices to split the members over (the
            member count must be a multiple of the device count); ``x_new`` is
            replicated and the predictions come back split over members.

    Returns:
        Predictions stacked on a leading ``(E,)`` axis.

    Raises:
        ConfigError: when ``predict_fn`` is not callable.
        ValueDomainError: when ``x_new`` (any float leaf of it) holds NaN or inf,
            naming the leaf and the first bad index. The check runs where the
            data lives and is skipped for traced inputs (inside ``jax.jit``),
            where NaN propagates to the predictions. ``params_stacked`` is not
            checked: a member whose parameters are NaN (a fit run with
            ``on_nonfinite="ignore"``) predicts NaN, and `predictive_summary`
            names it in a warning.
    """
    if not callable(predict_fn):
        raise ConfigError(f"predict_fn: expected a callable, got {type(predict_fn).__name__}")
    _check_inputs_finite(x_new)
    if devices is not None:
        sizes = {a.shape[0] for a in jax.tree.leaves(params_stacked) if eqx.is_array(a) and a.ndim}
        if len(sizes) != 1:
            raise ShapeError(
                f"params_stacked: expected one leading member axis, got sizes {sorted(sizes)}"
            )
        shardings = resolve_shardings(devices, sizes.pop())
        params_stacked = put_members(params_stacked, shardings)
        x_new = put_replicated(x_new, shardings)
    return eqx.filter_vmap(predict_fn, in_axes=(eqx.if_array(0), None))(params_stacked, x_new)
