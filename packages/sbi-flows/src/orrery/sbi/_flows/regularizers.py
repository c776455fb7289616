"""Penalties on the rational-quadratic spline parameters of a coupling flow.

The conditioners of a spline flow output, per transformed coordinate, the knot
positions (bin widths and heights on ``[-B, B]``) and the knot derivatives. The
penalties below discourage degenerate splines; each is a mean over layers, batch
rows, coordinates and bins, and is zero when the splines satisfy its target:

* small bins: ``mean(relu(target - w / w0)^2)`` over bin widths and heights ``w``,
  ``w0 = 2B / n_bins`` the uniform width (``spline_min_bin_ratio_target``);
* entropy: ``mean(relu(floor - H)^2)`` with ``H = -sum(p log p) / log(n_bins)`` the
  normalised entropy of the bin-width (and -height) fractions ``p``
  (``spline_entropy_floor``; ``H = 1`` for uniform bins);
* derivatives: ``mean(relu(log(d_min / d))^2 + relu(log(d / d_max))^2)`` over knot
  derivatives ``d`` (``spline_min_derivative_target``, ``spline_max_derivative_target``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import Chain, Invert, Scan
from flowjax.distributions import unwrap  # paramax.unwrap, re-exported by flowjax
from jaxtyping import Array

from .linear_start import ConditionalLinearGaussian, linear_layer_index
from .spline import SplineCoupling, spline_knots


def _coupling_of(layer: Any) -> SplineCoupling | None:
    if isinstance(layer, SplineCoupling):
        return layer
    if isinstance(layer, Chain) and isinstance(layer.bijections[0], SplineCoupling):
        return layer.bijections[0]
    return None


def spline_parameters(flow: Any, z: Array, condition: Array) -> tuple[Array, Array, Array] | None:
    """Bin widths, bin heights and knot derivatives of every spline met by ``z``.

    Args:
        flow: the conditional coupling flow built by ``_flows.build_flow``.
        z: one point in flow coordinates, shape ``(d,)``.
        condition: its context vector.

    Returns:
        ``(widths, heights, derivatives)`` of shapes ``(layers, d_t, bins)``,
        ``(layers, d_t, bins)`` and ``(layers, d_t, bins + 1)``, layers in the order
        ``z`` meets them, or ``None`` when the flow has no rational-quadratic
        coupling layers (or other layers between them).
    """
    bij = unwrap(flow).bijection
    parts = bij.bijections if linear_layer_index(bij) is not None else (bij,)
    found = []
    # From the parameter side towards the base: build_flow's Chain([couplings,
    # linear, couplings]) or Chain([couplings, linear]), or the couplings alone.
    for part in reversed(parts):
        if isinstance(part, ConditionalLinearGaussian):
            z = part.inverse(z, condition)
            continue
        met = _stack_parameters(part, z, condition)
        if met is None:
            return None
        z, out = met
        found.append(out)
    widths, heights, derivs = (
        jnp.concatenate(arrays, axis=0) for arrays in zip(*found, strict=True)
    )
    return widths, heights, derivs


def _stack_parameters(bij: Any, z: Array, condition: Array) -> tuple[Array, Any] | None:
    """``z`` through one stack of spline couplings, and the splines it met."""
    if not (isinstance(bij, Invert) and isinstance(bij.bijection, Scan)):
        return None
    stacked = bij.bijection.bijection
    if _coupling_of(stacked) is None:
        return None
    params, static = eqx.partition(stacked, eqx.is_array)

    def step(x, layer_params):
        layer = eqx.combine(layer_params, static)
        cpl = _coupling_of(layer)
        if cpl is None:  # checked on the stack above; every layer has the same structure
            raise TypeError(f"expected a spline coupling layer, got {type(layer).__name__}")
        x_pos, y_pos, derivs = spline_knots(cpl.spline_parameters(x, condition), cpl.bound)
        out = (jnp.diff(x_pos, axis=-1), jnp.diff(y_pos, axis=-1), derivs)
        return layer.transform(x, condition), out

    return jax.lax.scan(step, z, params)


def _small_bin(sizes: Array, uniform: Array, target: float) -> Array:
    return jnp.mean(jax.nn.relu(target - sizes / uniform) ** 2)


def _entropy(sizes: Array, floor: float) -> Array:
    p = sizes / jnp.sum(sizes, axis=-1, keepdims=True)
    h = -jnp.sum(p * jnp.log(jnp.clip(p, 1e-12)), axis=-1) / jnp.log(sizes.shape[-1])
    return jnp.mean(jax.nn.relu(floor - h) ** 2)


def _derivative(d: Array, low: float, high: float) -> Array:
    log_d = jnp.log(d)
    return jnp.mean(
        jax.nn.relu(jnp.log(low) - log_d) ** 2 + jax.nn.relu(log_d - jnp.log(high)) ** 2
    )


def spline_penalties(
    model: Any,
    batch: Any,
    *,
    min_bin_ratio_target: float,
    entropy_floor: float,
    min_derivative_target: float,
    max_derivative_target: float,
) -> dict[str, Array]:
    """The three unweighted penalties of ``model``'s splines on a batch (flow coordinates).

    Only meaningful for the ``"spline"`` family (the caller checks it).

    Returns ``{"small_bin", "entropy", "derivative"}`` (zeros for a non-spline flow).
    """
    emb = jax.vmap(model.embed)(batch.observations)
    params = jax.vmap(lambda z, c: spline_parameters(model.flow, z, c))(batch.parameters, emb)
    if params is None:
        zero = jnp.zeros(())
        return {"small_bin": zero, "entropy": zero, "derivative": zero}
    widths, heights, derivs = params
    uniform = jnp.sum(widths, axis=-1, keepdims=True) / widths.shape[-1]  # 2B / bins
    sizes = jnp.concatenate([widths, heights], axis=-1)
    return {
        "small_bin": _small_bin(sizes, uniform, min_bin_ratio_target),
        "entropy": 0.5 * (_entropy(widths, entropy_floor) + _entropy(heights, entropy_floor)),
        "derivative": _derivative(derivs, min_derivative_target, max_derivative_target),
    }


def regularized_loss(
    loss_fn: Callable[..., Array],
    *,
    small_bin_weight: float,
    entropy_weight: float,
    derivative_weight: float,
    **targets: float,
) -> Callable[..., Array]:
    """``loss_fn`` plus the weighted spline penalties; ``loss_fn`` itself when all weights are 0."""
    weights = {
        "small_bin": small_bin_weight,
        "entropy": entropy_weight,
        "derivative": derivative_weight,
    }
    if all(w == 0 for w in weights.values()):
        return loss_fn

    def loss(model: Any, batch: Any, key: Any = None) -> Array:
        pen = spline_penalties(model, batch, **targets)
        return loss_fn(model, batch, key) + sum(w * pen[k] for k, w in weights.items() if w)

    return loss
