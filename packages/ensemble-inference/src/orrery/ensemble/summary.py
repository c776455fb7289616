"""Ensemble summaries: predictive statistics, ``Draws``, posterior predictive draws."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from orrery.interface import ConfigError, Draws, ShapeError, check_positive_int

from ._checks import as_key

__all__ = ["PredictiveSummary", "ensemble_predictive", "predictive_summary", "to_draws"]


class PredictiveSummary(NamedTuple):
    """Statistics over the member axis of stacked predictions.

    Attributes:
        mean: the member mean, shape ``predictions.shape[1:]``.
        std: the member standard deviation (divisor ``E``), same shape.
        quantiles: ``(Q, *predictions.shape[1:])``, one row per level.
        levels: the quantile levels, ``(Q,)``.
    """

    mean: Float[Array, "..."]
    std: Float[Array, "..."]
    quantiles: Float[Array, "Q ..."]
    levels: Float[Array, " Q"]


def predictive_summary(
    predictions: Float[ArrayLike, "E ..."], quantiles: Sequence[float] = (0.05, 0.5, 0.95)
) -> PredictiveSummary:
    """Mean, standard deviation and quantiles of ``predictions`` over the member axis (axis 0).

    Non-finite predictions (a member whose parameters diverged) are kept, so the
    statistics they touch are NaN or inf, and a `RuntimeWarning` says how many
    there are and which members hold them (not checked when ``predictions``
    is traced, inside ``jax.jit``).

    Args:
        predictions: an ``(E, ...)`` array, e.g. from `ensemble_predict`.
        quantiles: levels in ``[0, 1]``.

    Returns:
        A `PredictiveSummary`.

    Raises:
        ShapeError: when ``predictions`` has no member axis.
        ConfigError: when a level is not a number in ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> preds = jnp.stack([jnp.full(3, float(e)) for e in range(5)])  # 5 members
        >>> s = predictive_summary(preds, quantiles=(0.25, 0.5, 0.75))
        >>> s.mean.tolist(), s.quantiles[:, 0].tolist()
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    """
    preds = jnp.asarray(predictions)
    if preds.ndim < 1 or preds.shape[0] < 1:
        raise ShapeError(f"predictions: expected shape (E, ...) with E >= 1, got {preds.shape}")
    try:
        levels = np.asarray(quantiles, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"quantiles: expected levels in [0, 1], got {quantiles!r}") from None
    if levels.size == 0 or np.any(~np.isfinite(levels)) or np.any((levels < 0) | (levels > 1)):
        raise ConfigError(f"quantiles: expected levels in [0, 1], got {list(quantiles)}")
    if not jnp.issubdtype(preds.dtype, jnp.inexact):
        preds = preds.astype(jnp.result_type(float))
    _warn_nonfinite_members(preds)
    q = jnp.quantile(preds, jnp.asarray(levels, preds.dtype), axis=0)
    return PredictiveSummary(preds.mean(0), preds.std(0), q, jnp.asarray(levels, preds.dtype))


def _warn_nonfinite_members(preds: jax.Array) -> None:
    counts = jnp.sum(~jnp.isfinite(preds.reshape(preds.shape[0], -1)), axis=1)
    try:
        per_member = np.asarray(counts)
    except jax.errors.TracerArrayConversionError:  # inside jax.jit: nothing to look at yet
        return
    if per_member.any():
        members = np.flatnonzero(per_member).tolist()
        warnings.warn(
            f"predictions: {int(per_member.sum())} non-finite value(s) (NaN or inf) from "
            f"member(s) {members}; the statistics they touch are NaN or inf",
            RuntimeWarning,
            stacklevel=3,
        )


def _key_name(entry: object) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path_name(path: tuple[object, ...]) -> str:
    return ".".join(_key_name(e) for e in path) or "params"


def to_draws(params_stacked: PyTree, names: Sequence[str] | None = None) -> Draws:
    """Turn stacked member parameters into `Draws`, one chain per member.

    Every array leaf ``(E, *shape)`` becomes a variable of shape ``(E, 1,
    *shape)`` (E chains of one draw). Names come from the pytree paths, joined
    by dots: ``{"w": ..}`` gives ``w``, an equinox MLP gives ``layers.0.weight``.

    Args:
        params_stacked: parameters from a fit, array leaves ``(E, ...)``.
        names: one name per array leaf (in ``jax.tree.leaves`` order) to use instead.

    Returns:
        A `Draws`.
    """
    flat = [
        (path, leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params_stacked)[0]
        if eqx.is_array(leaf) or isinstance(leaf, np.ndarray)
    ]
    if not flat:
        raise ShapeError("params_stacked: expected at least one array leaf")
    if names is None:
        labels = [_path_name(path) for path, _ in flat]
    else:
        labels = list(names)
        if len(labels) != len(flat):
            raise ShapeError(
                f"names: expected {len(flat)} names (one per array leaf), got {len(labels)}"
            )
    if len(set(labels)) != len(labels):
        raise ConfigError(f"names: expected unique names, got {labels}")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for _, leaf in flat}
    if len(sizes) != 1 or None in sizes:
        raise ShapeError(
            "params_stacked: expected every array leaf to share a leading member axis, "
            f"got sizes {sizes}"
        )
    return Draws(
        {label: np.asarray(leaf)[:, None] for label, (_, leaf) in zip(labels, flat, strict=True)}
    )


def ensemble_predictive(
    model_fn: Callable[..., object],
    guide_fn: Callable[..., object],
    params_stacked: dict[str, Float[ArrayLike, "E ..."]],
    *args: PyTree[ArrayLike],
    num_samples: int,
    seed: PRNGKeyArray | int,
    return_sites: Sequence[str] | None = None,
    **kwargs: PyTree[ArrayLike],
) -> dict[str, Array]:
    """Posterior predictive draws from every member of a VI ensemble.

    Member ``e`` runs ``numpyro.infer.Predictive(model_fn, guide=guide_fn,
    params=params_e, num_samples=num_samples)`` with key ``split(seed, E)[e]``.

    Args:
        model_fn: the numpyro model.
        guide_fn: the guide the parameters belong to.
        params_stacked: constrained guide parameters, leaves ``(E, ...)`` (the
            ``params`` of `EnsembleVI` / `ensemble_vi`).
        *args: model arguments (e.g. ``x_new`` and ``None`` for ``y``).
        num_samples: draws per member.
        seed: a PRNG key or an int seed.
        return_sites: sites to return; default as ``Predictive``.
        **kwargs: model keyword arguments.

    Returns:
        ``{site: array[E, num_samples, ...]}``.
    """
    from numpyro.infer import Predictive

    num_samples = check_positive_int(num_samples, "num_samples")
    leaves = jax.tree.leaves(params_stacked)
    if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
        raise ShapeError("params_stacked: expected array leaves with a leading member axis")
    sizes = {jnp.shape(a)[0] for a in leaves}
    if len(sizes) != 1:
        raise ShapeError(
            f"params_stacked: leaves disagree on the member axis, sizes {sorted(sizes)}"
        )
    keys = jr.split(as_key(seed), sizes.pop())

    def one(params, key):
        predictive = Predictive(
            model_fn,
            guide=guide_fn,
            params=params,
            num_samples=num_samples,
            return_sites=None if return_sites is None else list(return_sites),
            parallel=True,
        )
        return predictive(key, *args, **kwargs)

    return jax.vmap(one)(params_stacked, keys)
