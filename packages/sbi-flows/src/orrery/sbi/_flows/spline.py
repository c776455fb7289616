"""Rational-quadratic spline couplings evaluated for all coordinates at once.

flowjax's ``Coupling`` builds one scalar ``RationalQuadraticSpline`` per transformed
coordinate and ``vmap``s it, and each spline finds its bin with
``jnp.searchsorted`` (a loop). `SplineCoupling` computes the same function
(Durkan et al. 2019, with flowjax's parametrisation: softmax bin widths with a
minimum width on ``[-B, B]``, softplus derivatives with a minimum, identity
outside the interval) on arrays: the bin is a count of knots below the input
and every knot quantity a gather. Training steps take about a quarter of the
time and the step compiles in half the time.

The conditioner is the same ``eqx.nn.MLP``, built from the same key, with the same
output layout as flowjax's ``Coupling`` with ``RationalQuadraticSpline(knots=K,
interval=B)``: per transformed coordinate ``K + 1`` width logits, ``K + 1`` height
logits and ``K + 2`` derivative pre-activations. Saved states are therefore
interchangeable between the two.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import AbstractBijection
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = ["SplineCoupling", "spline_knots", "spline_transform"]

MIN_WIDTH = 1e-3
MIN_DERIVATIVE = 1e-3
#: Pre-activation offset that makes a zero conditioner output a unit derivative.
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _softplus(x: Array) -> Array:
    # jax.nn.softplus (logaddexp) and its gradient cost ~10x this on CPU
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _positions(logits: Array, bound: float) -> Array:
    """Increasing knots ``[-B, ..., B]`` from bin-width logits ``(..., n)``: ``(..., n + 1)``."""
    n = logits.shape[-1]
    widths = MIN_WIDTH + (2 * bound - MIN_WIDTH * n) * jax.nn.softmax(logits, axis=-1)
    # cumulative sum as a product with a triangular matrix: faster than XLA's cumsum on CPU
    partial = jnp.triu(jnp.ones((n, n - 1), logits.dtype))
    inner = widths @ partial - bound
    edge = jnp.full((*logits.shape[:-1], 1), bound, logits.dtype)
    return jnp.concatenate([-edge, inner, edge], axis=-1)


def spline_knots(
    params: Float[Array, "k p"], bound: float
) -> tuple[Float[Array, "k n1"], Float[Array, "k n1"], Float[Array, "k n1"]]:
    """Knot positions ``x``, ``y`` and derivatives of ``k`` splines from conditioner outputs.

    ``params`` rows are ``[width logits (n), height logits (n), derivative
    pre-activations (n + 1)]`` for ``n`` bins; all zeros is the identity.
    """
    n = (params.shape[-1] - 1) // 3
    x_pos = _positions(params[..., :n], bound)
    y_pos = _positions(params[..., n : 2 * n], bound)
    derivs = _softplus(params[..., 2 * n :] + _DERIVATIVE_SHIFT) + MIN_DERIVATIVE
    return x_pos, y_pos, derivs


def _take(a: Array, onehot: Array) -> Array:
    # A masked sum rather than a gather: its gradient is a product, not a scatter.
    return jnp.sum(a * onehot, axis=-1)


def spline_transform(
    params: Float[Array, "k p"], x: Float[Array, " k"], bound: float, *, inverse: bool = False
) -> tuple[Float[Array, " k"], Float[Array, ""]]:
    """Apply ``k`` splines (or their inverses) elementwise; returns ``(y, log|det J|)``."""
    x_pos, y_pos, derivs = spline_knots(params, bound)
    src = y_pos if inverse else x_pos
    xc = jnp.clip(x, -bound, bound)
    last = x_pos.shape[-1] - 2
    k = jnp.clip(jnp.sum(src < xc[..., None], axis=-1) - 1, 0, last)
    knot = jnp.arange(last + 2)
    at0 = (knot == k[..., None]).astype(x.dtype)
    at1 = (knot == k[..., None] + 1).astype(x.dtype)
    x0, x1 = _take(x_pos, at0), _take(x_pos, at1)
    y0, y1 = _take(y_pos, at0), _take(y_pos, at1)
    d0, d1 = _take(derivs, at0), _take(derivs, at1)
    out, log_deriv = _BIN_MAPS[inverse](x, x0, x1, y0, y1, d0, d1, bound)
    log_det = log_deriv.sum()
    return out, -log_det if inverse else log_det


def _bin_map(x, x0, x1, y0, y1, d0, d1, bound, *, inverse):
    """The rational-quadratic map of ``x`` in its bin, elementwise: ``(y, log|dy/dx|)``.

    Differentiated, it is recomputed from its seven inputs (`_BIN_MAPS`) instead of
    keeping its two dozen intermediates: inside a ``Scan`` over layers each kept
    array is a buffer of its own that the epoch program writes and reads in kernels
    of their own (issue 37: a third fewer kernels in the forward scans; the
    recomputation is elementwise and fuses into the backward's kernels, and an
    epoch runs as fast).
    """
    inside = (x >= -bound) & (x <= bound)
    xc = jnp.clip(x, -bound, bound)
    width, height = x1 - x0, y1 - y0
    slope = height / width
    curvature = d1 + d0 - 2 * slope
    if inverse:
        rel = (xc - y0) * curvature
        a = height * (slope - d0) + rel
        b = height * d0 - rel
        c = -slope * (xc - y0)
        xi = (2 * c) / (-b - jnp.sqrt(b**2 - 4 * a * c))
    else:
        xi = (xc - x0) / width
    mix = xi * (1 - xi)
    denom = slope + curvature * mix
    out = xi * width + x0 if inverse else y0 + height * (slope * xi**2 + d0 * mix) / denom
    out = jnp.where(inside, jnp.clip(out, -bound, bound), x)
    deriv = slope**2 * (d1 * xi**2 + 2 * slope * mix + d0 * (1 - xi) ** 2) / denom**2
    log_deriv = jnp.log(jnp.where(inside, deriv, 1.0))
    return out, log_deriv


_BIN_MAPS = {
    inverse: jax.checkpoint(
        functools.partial(_bin_map, inverse=inverse),
        static_argnums=(7,),
        policy=jax.checkpoint_policies.nothing_saveable,
    )
    for inverse in (False, True)
}


class SplineCoupling(AbstractBijection):
    """A coupling layer whose transformer is a rational-quadratic spline per coordinate.

    The first ``untransformed_dim`` coordinates (and the condition) feed the
    conditioner; the rest are transformed.
    """

    shape: tuple[int, ...]
    cond_shape: tuple[int, ...] | None
    untransformed_dim: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    conditioner: eqx.nn.MLP

    def __init__(
        self,
        key: PRNGKeyArray,
        *,
        knots: int,
        interval: float,
        untransformed_dim: int,
        dim: int,
        cond_dim: int | None,
        nn_width: int,
        nn_depth: int,
    ) -> None:
        self.shape, self.dim, self.untransformed_dim = (dim,), dim, untransformed_dim
        self.cond_shape = None if cond_dim is None else (cond_dim,)
        self.num_bins, self.bound = knots + 1, float(interval)
        per_coordinate = 3 * self.num_bins + 1
        self.conditioner = eqx.nn.MLP(
            untransformed_dim + (cond_dim or 0),
            per_coordinate * (dim - untransformed_dim),
            nn_width,
            nn_depth,
            activation=jax.nn.relu,
            key=key,
        )

    def spline_parameters(self, x: Array, condition: Array | None = None) -> Array:
        """Conditioner output as ``(transformed coordinates, 3 * bins + 1)``."""
        head = x[: self.untransformed_dim]
        inputs = head if condition is None else jnp.concatenate([head, condition])
        return self.conditioner(inputs).reshape(self.dim - self.untransformed_dim, -1)

    def _apply(self, x: Array, condition: Array | None, inverse: bool) -> tuple[Array, Array]:
        params = self.spline_parameters(x, condition)
        tail, log_det = spline_transform(
            params, x[self.untransformed_dim :], self.bound, inverse=inverse
        )
        return jnp.concatenate([x[: self.untransformed_dim], tail]), log_det

    def transform_and_log_det(self, x, condition=None):
        return self._apply(jnp.asarray(x), _as_condition(condition), inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._apply(jnp.asarray(y), _as_condition(condition), inverse=True)


def _as_condition(condition: ArrayLike | None) -> Array | None:
    return None if condition is None else jnp.asarray(condition)
