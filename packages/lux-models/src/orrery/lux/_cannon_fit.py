"""Vectorised training kernels of The Cannon (all pixels at once).

Per pixel ``p`` the model is ``y_np = θ_p · φ(x_n) + noise`` with variance
``σ²_np + s²_p``. Training alternates two exact sub-steps, each vectorised over
pixels:

1. coefficients: weighted least squares with weights ``1 / (σ² + s²)`` plus an
   L2 (closed form) or L1 (FISTA proximal gradient) penalty on non-bias terms;
2. scatter: the maximiser of the per-pixel marginal likelihood in ``s²``, found
   by a safeguarded Newton iteration in ``log s²`` with a per-pixel convergence
   test.

Everything works on the ``(stars, pixels)`` arrays as given: the Gram matrices
are one matrix product over the ``k(k+1)/2`` distinct feature products, and the
sums over stars of the scatter step run row block by row block, which keeps the
work vectorised over pixels in float32 and float64 alike without transposing
the data.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

_ROWS = 8  # stars per unrolled block of the column sums


@lru_cache(maxsize=16)
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the distinct products ``φ_i φ_j`` (``i <= j``) and their place in ``k×k``."""
    i, j = (a.astype(np.int32) for a in np.triu_indices(k))
    pos = np.zeros((k, k), np.int32)
    pos[i, j] = np.arange(i.size)
    pos[j, i] = np.arange(i.size)
    return i, j, pos


def _tdot(a, b):
    """``aᵀ b`` contracting the leading (stars) axis of both, without a transposed copy."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def normal_equations(
    features: Float[Array, "n k"], weights: Float[Array, "n p"], y: Float[Array, "n p"]
) -> tuple[Float[Array, "p k k"], Float[Array, "p k"]]:
    """Per-pixel ``Fᵀ W F`` and ``Fᵀ W y``: one product over the distinct feature pairs."""
    k = features.shape[1]
    i, j, pos = _pairs(k)
    products = jnp.take(features, i, axis=1) * jnp.take(features, j, axis=1)
    gram = jnp.take(_tdot(weights, products), pos.ravel(), axis=1).reshape(-1, k, k)
    rhs = _tdot(weights * y, features)
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


def column_sums(row_fn, arrays, *, ops):
    """Reduce ``row_fn(*rows)`` over the leading (stars) axis of ``arrays``.

    ``row_fn`` maps one row of each array (``(p,)`` vectors) to a tuple of ``(p,)``
    vectors; ``ops`` gives, per output, ``"sum"`` or ``"max"``. Rows are taken
    ``_ROWS`` at a time in a loop whose body is unrolled, so every operation is
    elementwise over pixels (a column reduction of a ``(stars, pixels)`` array is
    not vectorised by XLA on CPU, in float64 especially).
    """
    n = arrays[0].shape[0]
    combine = {"sum": jnp.add, "max": jnp.maximum}

    def fold(acc, rows):
        out = row_fn(*rows)
        return tuple(combine[op](a, o) for op, a, o in zip(ops, acc, out, strict=True))

    first = row_fn(*(a[0] for a in arrays))
    n_blocks = (n - 1) // _ROWS

    def body(b, acc):
        start = 1 + b * _ROWS
        block = [jax.lax.dynamic_slice_in_dim(a, start, _ROWS, 0) for a in arrays]
        for r in range(_ROWS):
            acc = fold(acc, [blk[r] for blk in block])
        return acc

    acc = jax.lax.fori_loop(0, n_blocks, body, first) if n_blocks else first
    for r in range(1 + n_blocks * _ROWS, n):
        acc = fold(acc, [a[r] for a in arrays])
    return acc


def _grad_curv(r2, var, u):
    """Fused ``g = Σ (r² - v) / v²`` and ``h = Σ (v - 2 r²) / v³`` (``v = σ² + u``), per pixel.

    These are twice the first and second derivatives of the log marginal
    likelihood in ``u = s²``; masked entries carry ``σ² = inf`` and drop out.
    """

    def row(r2_n, var_n):
        iv = 1.0 / (var_n + u)
        a = r2_n * iv * iv
        return a - iv, iv * (iv - 2.0 * a)

    return column_sums(row, (r2, var), ops=("sum", "sum"))


@partial(jax.jit, static_argnames=("n_iter",))
def fit_scatter(
    r2: Float[Array, "n p"],
    var: Float[Array, "n p"],
    count: Float[Array, " p"],
    var_scale: Float[Array, " p"],
    init: Float[Array, " p"] | None = None,
    n_iter: int = 20,
    xtol: float = 1e-5,
) -> tuple[Float[Array, " p"], Bool[Array, " p"]]:
    """Per-pixel ``s²`` maximising ``-½ Σ_n [log(σ² + s²) + r² / (σ² + s²)]``.

    Args:
        r2: squared residuals, 0 where masked.
        var: measurement variances ``σ²``, ``inf`` where masked (so those
            entries drop out of every sum).
        count: number of unmasked entries per pixel.
        var_scale: a typical ``σ²`` per pixel (the mean); steps are measured
            against ``s² + var_scale``, the variance the likelihood sees.
        init: a warm start (the previous alternation's ``s²``), or None.
        n_iter: most Newton/bisection steps.
        xtol: per-pixel tolerance on the Newton step in ``log s²``.

    The derivative ``g(u)`` is negative for ``u >= max r²``; when ``g(0) <= 0`` the
    maximum sits on the boundary ``s² = 0``. Otherwise Newton steps, in ``u``
    (exact where ``g`` is nearly linear, ``s² ≪ σ²``) or else in ``t = log u``
    (right where ``s² ≫ σ²``), are taken from the moment estimate (or ``init``)
    and accepted whenever they land inside the bracket ``[lo, hi]`` kept by the
    signs of ``g``, ends included (a converged point may equal an end); outside
    it the step is a bisection. Gradient and curvature come from one fused pass
    over the stars. A pixel stops once its Newton step is below ``xtol``
    relative to ``s² + var_scale`` and keeps its value while the others continue.

    Returns:
        ``s²`` per pixel and whether the pixel converged within ``n_iter`` steps.
    """
    dtype = r2.dtype

    def first_row(r2_n, var_n):
        iv = 1.0 / var_n
        return r2_n - jnp.where(iv > 0, var_n, 0.0), r2_n, iv * (r2_n * iv - 1.0)

    excess, hi0, g0 = column_sums(first_row, (r2, var), ops=("sum", "max", "sum"))
    interior = g0 > 0
    hi0 = hi0 + jnp.asarray(1e-30, dtype)
    moment = excess / jnp.maximum(count, 1.0)
    u0 = jnp.clip(moment, 0.01 * hi0, 0.99 * hi0)
    if init is not None:  # warm start from the previous alternation
        u0 = jnp.where((init > 0) & (init < hi0), init, u0)
    zero = jnp.zeros_like(hi0)

    def body(carry):
        it, u, lo, hi, done = carry
        g, h = _grad_curv(r2, var, u)
        lo = jnp.where(g > 0, u, lo)
        hi = jnp.where(g > 0, hi, u)
        concave = h < 0
        # Newton in u (exact where g is nearly linear: s² small against σ²) …
        newton_u = u - g / jnp.where(concave, h, -jnp.inf)
        # … and in t = log u (dL/dt ∝ g u, d²L/dt² ∝ h u² + g u: right where s² ≫ σ²)
        gt = g * u
        ht = h * u * u + gt
        newton_t = u * jnp.exp(jnp.clip(-gt / jnp.where(ht < 0, ht, -jnp.inf), -4.0, 4.0))

        def ok(x):  # inside the bracket, ends included: a converged point may sit on one
            return (x >= lo) & (x <= hi) & (x > 0) & jnp.isfinite(x)

        bisect = jnp.where(lo > 0, jnp.sqrt(lo * hi), 0.5 * (lo + hi))
        use_u, use_t = ok(newton_u) & concave, ok(newton_t) & (ht < 0)
        u_new = jnp.where(use_u, newton_u, jnp.where(use_t, newton_t, bisect))
        step = jnp.abs(u_new - u) / jnp.maximum(u_new + var_scale, jnp.finfo(u.dtype).tiny)
        conv = ((use_u | use_t) & (step < xtol)) | (g == 0)
        u = jnp.where(done, u, u_new)
        return it + 1, u, lo, hi, done | conv

    def cond(carry):
        it, _, _, _, done = carry
        return (it < n_iter) & ~jnp.all(done)

    init_c = (jnp.asarray(0), u0, zero, hi0, ~interior)
    _, u, _, _, done = jax.lax.while_loop(cond, body, init_c)
    return jnp.where(interior, u, 0.0), done


def _well_posed(gram, rhs, penalty, allowed):
    """Pixels whose (censored, penalised) normal equations are safely non-singular.

    The smallest eigenvalue of the Gram matrix scaled to a unit diagonal must
    exceed ``10 k ε``; below that the solution is round-off.
    """
    gram, _ = _apply_censoring(gram, rhs, allowed)
    gram = gram + jnp.eye(gram.shape[-1], dtype=gram.dtype) * penalty
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(gram, axis1=1, axis2=2), jnp.finfo(gram.dtype).tiny))
    low = jnp.linalg.eigvalsh(gram / d[:, :, None] / d[:, None, :])[:, 0]
    return low > 10 * gram.shape[-1] * jnp.finfo(gram.dtype).eps


@partial(
    jax.jit,
    static_argnames=("reg_type", "known_noise", "fit_scatter_", "max_iter", "l1_iter"),
)
def fit_all(
    features,
    flux,
    ivar,
    penalty,
    allowed,
    tol,
    reg_type: str,
    known_noise: bool,
    fit_scatter_: bool,
    max_iter: int,
    l1_iter: int = 500,
):
    """The whole training loop, masking included, in one compiled program.

    Entries with non-finite flux or ivar, or ivar <= 0, are masked. A pixel is
    usable when it is seen by at least as many stars as it has free (uncensored)
    coefficients; unusable pixels get zero coefficients and scatter.

    Coefficients with the base weights, then up to ``max_iter`` rounds of
    (scatter given θ, θ given the new weights) until the largest relative
    change of ``s² + σ²`` (``σ²`` the pixel's mean measurement variance) is
    below ``tol``. When the scatter has not moved beyond
    round-off the coefficients already belong to it and the solve is skipped.
    Without measurement noise the weights are ``1 / s²`` per pixel, so the Gram
    matrices of the first solve are rescaled instead of recomputed.

    Returns:
        coefficients ``(p, k)``, ``s²`` ``(p,)``, usable ``(p,)``, scatter
        converged ``(p,)`` and whether any ivar is negative (the caller refuses
        the fit then; checking here saves a pass over the data).
    """
    dtype = flux.dtype
    if ivar is None:
        ivar = jnp.ones_like(flux)

    def seen(f, i):
        return (jnp.isfinite(f) & jnp.isfinite(i) & (i > 0)).astype(dtype)

    def seen_var(f, i):
        m = seen(f, i)
        return m, jnp.where(m > 0, 1.0 / jnp.where(m > 0, i, 1.0), 0.0), (i < 0).astype(dtype)

    count, sum_var, negative = column_sums(seen_var, (flux, ivar), ops=("sum", "sum", "max"))
    negative = jnp.any(negative > 0)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    n_free = jnp.sum(allowed, axis=1)
    usable = (count >= jnp.maximum(n_free, 1)) & (n_free > 0)
    n_good = jnp.where(usable, count, 0.0)
    good = (seen(flux, ivar) > 0) & usable[None, :]
    mask = good.astype(dtype)
    y = jnp.where(good, flux, 0.0)
    iv = jnp.where(good, ivar, 0.0)
    # measurement variance, inf where masked: masked entries drop out of every scatter sum
    var = jnp.where(good, 1.0 / jnp.where(good, ivar, 1.0), jnp.inf)
    # materialise once; otherwise XLA may recompute them inside the loops below
    good, mask, y, iv, var = jax.lax.optimization_barrier((good, mask, y, iv, var))
    allowed = allowed & usable[:, None]
    p, k = y.shape[1], features.shape[1]
    zeros = jnp.zeros((p, k), dtype)
    base_gram, base_rhs = normal_equations(features, iv if known_noise else mask, y)
    # too little information also means normal equations that the labels leave singular
    usable = usable & _well_posed(base_gram, base_rhs, penalty, allowed)
    allowed = allowed & usable[:, None]
    solve = partial(solve_from_gram, reg_type=reg_type, l1_iter=l1_iter)
    coeffs = solve(base_gram, base_rhs, penalty, allowed, zeros)
    s2 = jnp.zeros(p, dtype)
    all_conv = jnp.ones(p, bool)
    if not fit_scatter_:
        return coeffs, s2, usable, all_conv, negative
    # below this relative change of s the re-solved θ equals the current one to round-off
    still = jnp.asarray(max(float(jnp.finfo(dtype).eps) * 64, 1e-12), dtype)

    def body(state):
        it, theta, s2_old, _, _ = state
        r2 = jnp.where(good, jnp.square(y - features @ theta.T), 0.0)
        if known_noise:
            s2_new, conv = fit_scatter(r2, var, n_good, var_scale, s2_old)
        else:
            s2_new = jnp.sum(r2, axis=0) / jnp.maximum(n_good, 1.0)
            conv = all_conv
        # relative change of the variance the likelihood sees, s² + (typical σ²)
        floor = var_scale if known_noise else 0.0
        rel = jnp.abs(s2_new - s2_old) / jnp.maximum(s2_new + floor, jnp.finfo(dtype).tiny)
        change = jnp.max(jnp.where(usable, rel, 0.0))

        def resolve(_):
            if known_noise:
                w = 1.0 / (var + s2_new[None, :])
                gram, rhs = normal_equations(features, w, y)
            else:
                scale = 1.0 / jnp.maximum(s2_new, 1e-30)
                gram, rhs = base_gram * scale[:, None, None], base_rhs * scale[:, None]
            return solve(gram, rhs, penalty, allowed, theta)

        theta = jax.lax.cond(change > still, resolve, lambda _: theta, None)
        return it + 1, theta, s2_new, change, conv

    def cond(state):
        it, _, _, change, _ = state
        return (it < max_iter) & (change >= tol)

    init = (jnp.asarray(0), coeffs, s2, jnp.asarray(jnp.inf, dtype), all_conv)
    _, coeffs, s2, _, conv = jax.lax.while_loop(cond, body, init)
    return coeffs, jnp.where(usable, s2, 0.0), usable, conv, negative
