"""Vectorised training kernels of The Cannon (all pixels at once).

Per pixel ``p`` the model is ``y_np = θ_p · φ(x_n) + noise`` with variance
``σ²_np + s²_p``. Training alternates two exact sub-steps, each vectorised over
pixels:

1. coefficients: weighted least squares with weights ``1 / (σ² + s²)`` plus an
   L2 (closed form) or L1 (FISTA proximal gradient) penalty on non-bias terms;
2. scatter: the maximiser of the per-pixel marginal likelihood in ``s²``
   (`orrery.lux._cannon_scatter.fit_scatter`).

The data arrive as ``(stars, pixels)`` flux and inverse variance, already
cleaned (finite, ``ivar >= 0``; a masked entry has ``ivar = 0``), and are never
copied: the loop materialises only what a step needs (the weights of a Gram
matrix, the squared residuals of a scatter fit), each written into a buffer of
the data's size that later steps reuse. On CPU a fresh buffer of that size
costs about as much as a pass over the data, so the count of them, not of
floating-point operations, sets the time. The Gram matrices are one matrix
product ``(k(k+1)/2, stars) @ (stars, pixels)`` over the distinct feature
products, the layout BLAS-like kernels run fastest.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ._cannon_scatter import column_sums, fit_scatter


@lru_cache(maxsize=16)
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the distinct products ``φ_i φ_j`` (``i <= j``) and their place in ``k×k``."""
    i, j = (a.astype(np.int32) for a in np.triu_indices(k))
    pos = np.zeros((k, k), np.int32)
    pos[i, j] = np.arange(i.size)
    pos[j, i] = np.arange(i.size)
    return i, j, pos


def gram_from_weights(products: Float[Array, "n m"], weights: Float[Array, "n p"], k: int):
    """Per-pixel ``Fᵀ W F`` ``(p, k, k)`` from the distinct feature products ``(n, k(k+1)/2)``."""
    _, _, pos = _pairs(k)
    sums = products.T @ weights  # (m, p): the layout the CPU matmul runs fastest
    return jnp.take(sums.T, pos.ravel(), axis=1).reshape(-1, k, k)


def feature_products(features: Float[Array, "n k"]) -> Float[Array, "n m"]:
    """The distinct products ``φ_i φ_j`` (``i <= j``) of every star, ``(n, k(k+1)/2)``."""
    i, j, _ = _pairs(features.shape[1])
    return jnp.take(features, i, axis=1) * jnp.take(features, j, axis=1)


def normal_equations(
    features: Float[Array, "n k"], weights: Float[Array, "n p"], y: Float[Array, "n p"]
) -> tuple[Float[Array, "p k k"], Float[Array, "p k"]]:
    """Per-pixel ``Fᵀ W F`` and ``Fᵀ W y``: one product over the distinct feature pairs."""
    gram = gram_from_weights(feature_products(features), weights, features.shape[1])
    rhs = (features.T @ (weights * y)).T
    return gram, rhs


def _apply_censoring(gram, rhs, allowed):
    """Force censored terms to zero: identity rows/columns and zero right-hand side."""
    m = allowed.astype(gram.dtype)
    eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
    gram = gram * m[:, :, None] * m[:, None, :] + eye * (1.0 - m)[:, None, :]
    return gram, rhs * m


def _solve_l2(gram, rhs, penalty_diag):
    a = gram + jnp.eye(gram.shape[-1], dtype=gram.dtype) * penalty_diag
    return jnp.linalg.solve(a, rhs[..., None])[..., 0]


def _solve_l1(gram, rhs, penalty_diag, init, n_iter: int):
    """FISTA on ``θᵀGθ - 2 bᵀθ + Σ_j λ_j |θ_j|``, vectorised over pixels."""
    lip = 2.0 * jnp.linalg.eigvalsh(gram)[..., -1:]  # Lipschitz constant of the smooth part
    step = 1.0 / jnp.maximum(lip, 1e-30)

    def prox(v, t):
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t * penalty_diag, 0.0)

    def body(_, carry):
        theta, z, t = carry
        grad = 2.0 * (jnp.einsum("pkl,pl->pk", gram, z) - rhs)
        new = prox(z - step * grad, step)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        z = new + ((t - 1.0) / t_new) * (new - theta)
        return new, z, t_new

    theta, _, _ = jax.lax.fori_loop(0, n_iter, body, (init, init, jnp.ones((), gram.dtype)))
    return theta


def solve_from_gram(gram, rhs, penalty_diag, allowed, init, reg_type: str, l1_iter: int = 500):
    """Penalised least squares for every pixel from its Gram matrix and right-hand side."""
    gram, rhs = _apply_censoring(gram, rhs, allowed)
    if reg_type == "l1":
        ridge = jnp.zeros_like(penalty_diag)
        # start FISTA from the unpenalised (tiny-ridge) solution, which is usually close
        start = jnp.where(jnp.any(init != 0.0), init, _solve_l2(gram, rhs, ridge + 1e-8))
        return _solve_l1(gram, rhs, penalty_diag, start * allowed, l1_iter) * allowed
    return _solve_l2(gram, rhs, penalty_diag) * allowed


@partial(jax.jit, static_argnames=("reg_type", "l1_iter"))
def solve_coefficients(
    features: Float[Array, "n k"],
    weights: Float[Array, "n p"],
    y: Float[Array, "n p"],
    penalty_diag: Float[Array, " k"],
    allowed: Bool[Array, "p k"],
    init: Float[Array, "p k"],
    reg_type: str = "l2",
    l1_iter: int = 500,
) -> Float[Array, "p k"]:
    """Penalised weighted least squares for every pixel at once."""
    gram, rhs = normal_equations(features, weights, y)
    return solve_from_gram(gram, rhs, penalty_diag, allowed, init, reg_type, l1_iter)


def _well_posed(gram, rhs, penalty, allowed):
    """Pixels whose (censored, penalised) normal equations are safely non-singular.

    The smallest eigenvalue of the Gram matrix scaled to a unit diagonal must
    exceed ``τ = 10 k ε``; below that the solution is round-off. The test is a
    Cholesky factorisation of the scaled matrix minus ``τ I``, which exists
    exactly when every eigenvalue exceeds ``τ``; it runs elementwise over
    pixels (about ``k³/6`` vector operations), far cheaper than eigenvalues.
    """
    gram, _ = _apply_censoring(gram, rhs, allowed)
    k = gram.shape[-1]
    gram = gram + jnp.eye(k, dtype=gram.dtype) * penalty
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(gram, axis1=1, axis2=2), jnp.finfo(gram.dtype).tiny))
    a = gram / d[:, :, None] / d[:, None, :]
    tau = 10 * k * jnp.finfo(gram.dtype).eps
    low = [[None] * k for _ in range(k)]
    ok = jnp.all(jnp.isfinite(a), axis=(1, 2))
    for j in range(k):
        pivot = a[:, j, j] - tau - sum(low[j][m] * low[j][m] for m in range(j))
        ok = ok & (pivot > 0)
        low[j][j] = jnp.sqrt(jnp.maximum(pivot, jnp.finfo(gram.dtype).tiny))
        for i in range(j + 1, k):
            dot = sum(low[i][m] * low[j][m] for m in range(j))
            low[i][j] = (a[:, i, j] - dot) / low[j][j]
    return ok


def _row_scan(f, i):
    """One star's share of the input scan, in arithmetic only (no selects, see `column_sums`).

    Seen (ivar > 0), ``σ²`` where seen, negative ivar, and ``0·f + 0·i`` (NaN
    exactly when flux or ivar is not finite).
    """
    seen = (i > 0).astype(f.dtype)
    var = seen / jnp.maximum(i, jnp.finfo(f.dtype).tiny)
    return seen, var, (i < 0).astype(f.dtype), 0 * f + 0 * i


@jax.jit
def scan_inputs(flux: Float[Array, "n p"], ivar: Float[Array, "n p"]):
    """One read-only pass over the training data.

    Returns:
        per pixel the count of entries with ivar > 0 and the sum of their
        ``σ² = 1 / ivar`` (meaningful for clean data only); whether any ivar is
        negative; and whether any flux or ivar is not finite (then
        `clean_inputs` and scan again).
    """
    count, sum_var, negative, probe = column_sums(
        _row_scan, (flux, ivar), ops=("sum", "sum", "sum", "sum")
    )
    return count, sum_var, jnp.any(negative > 0), ~jnp.all(jnp.isfinite(probe))


@jax.jit
def clean_inputs(flux: Float[Array, "n p"], ivar: Float[Array, "n p"] | None):
    """Flux and ivar with every unusable entry (non-finite flux or ivar, ivar <= 0) set to 0.

    Without ivar the returned ivar is 1 where the flux is finite and 0 elsewhere
    (unit weights on the entries that are there).
    """
    if ivar is None:
        good = jnp.isfinite(flux)
        return jnp.where(good, flux, 0.0), good.astype(flux.dtype)
    good = jnp.isfinite(flux) & jnp.isfinite(ivar) & (ivar > 0)
    return jnp.where(good, flux, 0.0), jnp.where(good, ivar, 0.0)


@partial(
    jax.jit,
    static_argnames=("reg_type", "known_noise", "fit_scatter_", "max_iter", "l1_iter"),
)
def fit_all(
    features,
    flux,
    ivar,
    count,
    sum_var,
    penalty,
    allowed,
    tol,
    reg_type: str,
    known_noise: bool,
    fit_scatter_: bool,
    max_iter: int,
    l1_iter: int = 500,
):
    """The whole training loop in one compiled program.

    ``flux`` and ``ivar`` must be clean (`scan_inputs`, `clean_inputs`): finite,
    ``ivar >= 0``, an entry with ``ivar = 0`` is masked. Without measurement
    noise (``known_noise`` False) ``ivar`` is the 0/1 mask. ``count`` and
    ``sum_var`` come from `scan_inputs`. A pixel is usable when it is seen by
    at least as many stars as it has free (uncensored) coefficients and its
    normal equations are well posed; unusable pixels get zero coefficients and
    scatter.

    Coefficients with the base weights, then up to ``max_iter`` rounds of
    (scatter given θ, θ given the new weights) until the largest relative
    change of ``s² + σ²`` (``σ²`` the pixel's mean measurement variance) is
    below ``tol``. When the scatter has not moved beyond round-off the
    coefficients already belong to it and the solve is skipped; in the last
    round (change below ``tol``) it is skipped too, so the coefficients are
    those solved with a scatter within ``tol`` of the returned one (on the
    reference problem that moves them by 2e-8 relative, and saves a Gram
    matrix and solve per fit). Without
    measurement noise the weights are ``1 / s²`` per pixel, so the Gram
    matrices of the first solve are rescaled instead of recomputed.

    Returns:
        coefficients ``(p, k)``, ``s²`` ``(p,)``, usable ``(p,)`` and scatter
        converged ``(p,)``.
    """
    dtype = flux.dtype
    var_scale = sum_var / jnp.maximum(count, 1.0)
    n_free = jnp.sum(allowed, axis=1)
    usable = (count >= jnp.maximum(n_free, 1)) & (n_free > 0)
    allowed = allowed & usable[:, None]
    p, k = flux.shape[1], features.shape[1]
    products = feature_products(features)

    # masked entries have ivar = 0, which zeroes their weight in every sum below;
    # unusable pixels keep theirs, but their coefficients are censored to 0 and
    # their scatter is not fitted (count 0), so nothing of them reaches the result
    def normal(s2):
        w = ivar / (1.0 + ivar * s2[None, :]) if known_noise else ivar
        return gram_from_weights(products, w, k), (features.T @ (w * flux)).T

    def residuals(theta):
        return jnp.square(flux - features @ theta.T)

    zeros = jnp.zeros((p, k), dtype)
    s2 = jnp.zeros(p, dtype)
    base_gram, base_rhs = normal(s2)
    # too little information also means normal equations that the labels leave singular
    usable = usable & _well_posed(base_gram, base_rhs, penalty, allowed)
    allowed = allowed & usable[:, None]
    n_good = jnp.where(usable, count, 0.0)
    solve = partial(solve_from_gram, reg_type=reg_type, l1_iter=l1_iter)
    coeffs = solve(base_gram, base_rhs, penalty, allowed, zeros)
    all_conv = jnp.ones(p, bool)
    if not fit_scatter_:
        return coeffs, s2, usable, all_conv
    # below this relative change of s the re-solved θ equals the current one to round-off
    still = jnp.asarray(max(float(jnp.finfo(dtype).eps) * 64, 1e-12), dtype)

    def body(state):
        it, theta, s2_old, _, _ = state
        r2 = residuals(theta)
        if known_noise:
            s2_new, conv = fit_scatter(r2, ivar, n_good, sum_var, s2_old)
        else:
            (total,) = column_sums(lambda r, m: (r * m,), (r2, ivar), ops=("sum",))
            s2_new = total / jnp.maximum(n_good, 1.0)
            conv = all_conv
        # relative change of the variance the likelihood sees, s² + (typical σ²)
        floor = var_scale if known_noise else 0.0
        rel = jnp.abs(s2_new - s2_old) / jnp.maximum(s2_new + floor, jnp.finfo(dtype).tiny)
        change = jnp.max(jnp.where(usable, rel, 0.0))

        def resolve(_):
            if known_noise:
                gram, rhs = normal(s2_new)
            else:
                scale = 1.0 / jnp.maximum(s2_new, 1e-30)
                gram, rhs = base_gram * scale[:, None, None], base_rhs * scale[:, None]
            return solve(gram, rhs, penalty, allowed, theta)

        theta = jax.lax.cond((change > still) & (change >= tol), resolve, lambda _: theta, None)
        return it + 1, theta, s2_new, change, conv

    def cond(state):
        it, _, _, change, _ = state
        return (it < max_iter) & (change >= tol)

    init = (jnp.asarray(0), coeffs, s2, jnp.asarray(jnp.inf, dtype), all_conv)
    _, coeffs, s2, _, conv = jax.lax.while_loop(cond, body, init)
    return coeffs, jnp.where(usable, s2, 0.0), usable, conv
