"""The linear-Gaussian start: a flow that begins as the least-squares posterior.

With ``linear_gaussian_start=True`` the flow holds a conditional affine layer
``z = L u + W e + b`` (`ConditionalLinearGaussian`; where it sits is
``_flows.build_flow``'s choice), and `fit` starts from the best posterior that is
Gaussian with a mean linear in the raw observation ``r``:

- every conditioner's output layer and the encoder's fusion output layer are
  zeroed, so the coupling and autoregressive layers start as the identity and the
  context ``e`` is the encoder's linear skip alone;
- the skip's first ``d`` rows hold the ridge regression of the flow coordinates on
  ``r`` (penalty chosen by exact leave-one-out error), ``W = [I 0]`` reads them,
  ``b`` is the intercept and ``L`` (held as its inverse) the Cholesky factor of the
  leave-one-out residual covariance (not the in-sample one, which is too narrow when ``r`` has
  many features).

The flow then starts as ``N(A r + b, Σ)``: exact for a linear-Gaussian problem,
the best such approximation otherwise, and training adds what a linear model
misses. Every piece stays trainable.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flowjax.bijections import AbstractBijection, Chain, Invert, Permute, Scan
from jaxtyping import Array, ArrayLike, Float

from orrery.interface import ConfigError, ShapeError

from .spline import SplineCoupling

__all__ = ["ConditionalLinearGaussian", "linear_gaussian_start", "linear_layer_index"]

#: Rows of the training split used for the regression (a seeded subset beyond it).
MAX_ROWS = 20_000
#: Raw observation features beyond which the regression is skipped (its cost grows as m^2 n).
MAX_FEATURES = 1024
#: Ridge penalties tried, as multiples of the mean eigenvalue of the centred Gram matrix.
RIDGE_GRID = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class ConditionalLinearGaussian(AbstractBijection):
    """``y = P^{-1} x + W c + b`` with ``P`` lower triangular (positive diagonal).

    ``P`` is the inverse of the Cholesky factor ``L`` of the covariance ``L Lᵀ``
    this layer gives a standard-normal input: the density direction (training) is
    the product ``P (y - W c - b)``, and only sampling solves a triangular system.
    """

    shape: tuple[int, ...]
    cond_shape: tuple[int, ...]
    weight: Float[Array, "d c"]
    bias: Float[Array, " d"]
    lower: Float[Array, "d d"]  # only the strictly lower triangle of P is used
    log_diag: Float[Array, " d"]  # log of P's diagonal

    def __init__(self, dim: int, cond_dim: int) -> None:
        self.shape, self.cond_shape = (dim,), (cond_dim,)
        self.weight = jnp.zeros((dim, cond_dim))
        self.bias = jnp.zeros(dim)
        self.lower = jnp.zeros((dim, dim))
        self.log_diag = jnp.zeros(dim)

    def precision_factor(self) -> Float[Array, "d d"]:
        """``P = L^{-1}``."""
        return jnp.tril(self.lower, -1) + jnp.diag(jnp.exp(self.log_diag))

    def _condition(self, condition: ArrayLike | None) -> Array:
        if condition is None:
            raise ShapeError("condition: the linear-Gaussian layer needs a context, got None")
        return jnp.asarray(condition)

    def transform_and_log_det(self, x, condition=None):
        shift = self.weight @ self._condition(condition) + self.bias
        y = jax.scipy.linalg.solve_triangular(self.precision_factor(), x, lower=True) + shift
        return y, -self.log_diag.sum()

    def inverse_and_log_det(self, y, condition=None):
        x = self.precision_factor() @ (y - self.weight @ self._condition(condition) - self.bias)
        return x, self.log_diag.sum()


def _device(values: np.ndarray, dtype: Any) -> Array:
    """``values`` cast on the host, then put on the device: no program is compiled."""
    return jax.device_put(np.asarray(values, dtype=dtype))


def _zero_output_layers(tree: Any) -> Any:
    """Zero the last layer (weights and bias; masks kept) of every ``eqx.nn.MLP`` in ``tree``."""

    def zero(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
        # Zeros made on the host: eagerly, each shape would compile a program of its own.
        last = jax.tree.map(
            lambda a: _device(np.zeros(a.shape), a.dtype) if eqx.is_inexact_array(a) else a,
            mlp.layers[-1],
        )
        return eqx.tree_at(lambda m: m.layers[-1], mlp, last)

    def is_mlp(node: Any) -> bool:
        return isinstance(node, eqx.nn.MLP)

    return jax.tree.map(lambda n: zero(n) if is_mlp(n) else n, tree, is_leaf=is_mlp)


def ridge_leave_one_out(
    x: Float[np.ndarray, "n m"], y: Float[np.ndarray, "n d"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge regression of ``y`` on ``x`` (with intercept), penalty chosen by leave-one-out.

    Leave-one-out residuals are exact: ``e_i / (1 - h_ii)`` with the ridge hat
    matrix's diagonal, for every penalty from one eigendecomposition.

    Returns:
        ``(coef (m, d), intercept (d,), leave-one-out residuals (n, d), penalty)``.
    """
    n = x.shape[0]
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    eig, vec = np.linalg.eigh(xc.T @ xc)
    eig = np.clip(eig, 0.0, None)
    proj = xc @ vec
    xty = vec.T @ (xc.T @ yc)
    unit = float(eig.mean()) or 1.0  # constant features: any penalty gives zero coefficients
    best: tuple[float, np.ndarray, np.ndarray, float] | None = None
    for alpha in RIDGE_GRID:
        inv = 1.0 / (eig + alpha * unit)
        coef = vec @ (xty * inv[:, None])
        leverage = (proj**2) @ inv + 1.0 / n
        loo = (yc - xc @ coef) / np.maximum(1.0 - leverage, 1e-9)[:, None]
        err = float(np.mean(loo**2))
        if best is None or err < best[0]:
            best = (err, coef, loo, alpha * unit)
    if best is None:  # RIDGE_GRID is not empty
        raise ConfigError("RIDGE_GRID: expected at least one penalty")
    _, coef, loo, penalty = best
    return coef, y_mean - x_mean @ coef, loo, penalty


def linear_layer_index(bijection: Any) -> int | None:
    """Where the one `ConditionalLinearGaussian` sits in ``build_flow``'s chain, or ``None``."""
    layers = bijection.bijections if isinstance(bijection, Chain) else ()
    found = [i for i, b in enumerate(layers) if isinstance(b, ConditionalLinearGaussian)]
    return found[0] if len(found) == 1 else None


def _linear_layer(flow: Any) -> ConditionalLinearGaussian:
    at = linear_layer_index(flow.bijection)
    if at is None:
        raise TypeError("the flow was not built with one linear-Gaussian layer")
    return flow.bijection.bijections[at]


def _parameter_side_order(flow: Any, d: int) -> np.ndarray:
    """``order`` with ``z[..., order]`` what the linear layer must output for targets ``z``.

    The coupling stacks after the linear layer (on the parameter side) start, their
    conditioners zeroed, as their permutations alone: the regression predicts the
    targets in the order those layers read them. Read off the permutation arrays (no
    program to compile).
    """
    layers = flow.bijection.bijections
    order = np.arange(d)
    at = linear_layer_index(flow.bijection)
    if at is None:
        raise TypeError("the flow was not built with one linear-Gaussian layer")
    # parameters -> linear layer: each stack's inverse, its layers in order
    for stack in reversed(layers[at + 1 :]):
        if not (isinstance(stack, Invert) and isinstance(stack.bijection, Scan)):
            raise TypeError(f"unexpected layer after the linear-Gaussian layer: {type(stack)}")
        stacked = stack.bijection.bijection
        parts = stacked.bijections if isinstance(stacked, Chain) else (stacked,)
        if any(not isinstance(p, (Permute, SplineCoupling)) for p in parts):
            raise TypeError("the layers after the linear-Gaussian layer are not spline couplings")
        perms = [np.asarray(p.permutation[0]) for p in parts if isinstance(p, Permute)]
        for layer_perms in zip(*perms, strict=True):  # one row per stacked layer
            for perm in layer_perms:
                order = order[perm]
    return order


def linear_gaussian_start(
    model: Any, z: np.ndarray, observations: dict, *, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Set ``model`` (encoder with a linear skip, flow with a linear-Gaussian layer) to the start.

    Args:
        model: a `PosteriorModel` built with ``linear_gaussian_start=True``.
        z: training targets in flow coordinates, ``(n, d)``.
        observations: the matching normalised observation blocks.
        seed: picks the rows when there are more than ``MAX_ROWS``.

    Returns:
        The started model and a summary (``"method"``, ``"rows"``, ``"features"``,
        ``"ridge_penalty"``, ``"explained_variance"`` per parameter).
    """
    z = np.asarray(z, np.float64)
    n, d = z.shape
    rows = np.arange(n)
    if n > MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(n, MAX_ROWS, replace=False))
    obs = jax.tree.map(lambda a: np.asarray(a)[rows], observations)
    raw = np.asarray(jax.vmap(model.encoder.raw_features)(obs), np.float64)
    info: dict[str, Any] = {"rows": len(rows), "features": int(raw.shape[1])}
    if raw.shape[1] > MAX_FEATURES:
        info["method"] = f"none (more than {MAX_FEATURES} raw observation features)"
        return model, info
    layer = _linear_layer(model.flow)  # first: a flow without one fails here, clearly
    flow = _zero_output_layers(model.flow)
    # The linear layer's output, in the order the layers after it read it.
    order = _parameter_side_order(flow, d)
    coef, intercept, loo, penalty = ridge_leave_one_out(raw, z[rows][:, order])
    cov = loo.T @ loo / len(rows)
    cov += 1e-9 * max(float(np.trace(cov)) / d, 1e-12) * np.eye(d)
    precision = np.linalg.inv(np.linalg.cholesky(cov))
    skip = model.encoder.skip
    emb_dim = skip.weight.shape[0]
    skip_w = np.zeros(skip.weight.shape)
    skip_w[:d] = coef.T
    dtype = layer.weight.dtype
    started = eqx.tree_at(
        lambda e: (e.weight, e.bias, e.lower, e.log_diag),
        layer,
        (
            _device(np.eye(d, emb_dim), dtype),
            _device(intercept, dtype),
            _device(np.tril(precision, -1), dtype),
            _device(np.log(np.diag(precision)), dtype),
        ),
    )
    flow = eqx.tree_at(_linear_layer, flow, started)
    encoder = eqx.tree_at(
        lambda e: (e.fusion, e.skip.weight),
        model.encoder,
        (_zero_output_layers(model.encoder.fusion), _device(skip_w, skip.weight.dtype)),
    )
    total = np.var(z[rows], axis=0)
    residual = np.empty(d)
    residual[order] = np.diag(cov)
    explained = 1.0 - residual / np.where(total > 0, total, 1.0)
    info.update(
        method="ridge regression on the raw observation",
        ridge_penalty=float(penalty),
        explained_variance=[round(float(v), 4) for v in explained],
    )
    model = eqx.tree_at(lambda m: (m.encoder, m.flow), model, (encoder, flow))
    return model, info
