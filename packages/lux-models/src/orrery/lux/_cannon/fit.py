"""Coefficient kernels of The Cannon, vectorised over pixels.

Per pixel ``p`` the model is ``y_np = θ_p · φ(x_n) + noise`` with variance
``σ²_np + s²_p``; the coefficients are weighted least squares with weights
``1 / (σ² + s²)`` plus an L2 (closed form) or L1 (FISTA proximal gradient)
penalty on non-bias terms. Here: the normal equations, their solves, the input
scan and cleaning. The training loop is `orrery.lux._cannon.train`.

The data arrive as ``(stars, pixels)`` flux and inverse variance and are never
copied: every pass walks the stars in blocks (`orrery.lux._cannon.blocks`) and
keeps what it forms (weights) in cache. The Gram matrices are sums over the
distinct feature products ``k(k+1)/2``.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import blocks as _blocks
from .blocks import block_rows, col_max, col_sum, row_blocks


@lru_cache(maxsize=16)
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the distinct products ``φ_i φ_j`` (``i <= j``) and their place in ``k×k``."""
    i, j = (a.astype(np.int32) for a in np.triu_indices(k))
    pos = np.zeros((k, k), np.int32)
    pos[i, j] = np.arange(i.size)
    pos[j, i] = np.arange(i.size)
    return i, j, pos


@lru_cache(maxsize=16)
def product_layout(
    k: int, exponents: tuple[tuple[int, ...], ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The products a Gram pass sums: one pair ``(i, j)`` per distinct product, and ``pos``.

    ``pos[a, b]`` is the place of ``φ_a φ_b`` among them. Without ``exponents``
    they are the ``k(k+1)/2`` pairs ``i <= j``. Monomial features (``exponents``
    gives each feature's exponent vector) share products: ``φ_a φ_b`` is the
    monomial of exponent ``e_a + e_b``, so there are only as many distinct
    products as monomials of twice the degree (35 instead of 55 for 3 labels
    at degree 2), and each Gram pass does that much less arithmetic.
    """
    if exponents is None:
        return _pairs(k)
    if len(exponents) != k:
        raise ValueError(f"exponents: expected {k} exponent vectors, got {len(exponents)}")
    i_all, j_all, _ = _pairs(k)
    index: dict[tuple[int, ...], int] = {}
    first_i, first_j = [], []
    pos = np.zeros((k, k), np.int32)
    for a, b in zip(i_all.tolist(), j_all.tolist(), strict=True):
        key = tuple(x + y for x, y in zip(exponents[a], exponents[b], strict=True))
        if key not in index:
            index[key] = len(first_i)
            first_i.append(a)
            first_j.append(b)
        pos[a, b] = pos[b, a] = index[key]
    return np.asarray(first_i, np.int32), np.asarray(first_j, np.int32), pos


def _unpack_gram(sums, k: int, layout=None):
    """``(m, p)`` sums of the distinct products as ``(p, k, k)`` matrices."""
    _, _, pos = _pairs(k) if layout is None else layout
    return jnp.take(sums.T, pos.ravel(), axis=1).reshape(-1, k, k)


def feature_products(features: Float[Array, "n k"], layout=None) -> Float[Array, "n m"]:
    """The distinct products of every star's features, ``(n, m)`` (`product_layout`)."""
    i, j, _ = _pairs(features.shape[1]) if layout is None else layout
    return jnp.take(features, i, axis=1) * jnp.take(features, j, axis=1)


def weighted_normal(
    features: Float[Array, "n k"],
    ivar: Float[Array, "n p"],
    y: Float[Array, "n p"],
    s2: Float[Array, " p"] | None = None,
    products: Float[Array, "n m"] | None = None,
    with_stats: bool = False,
    layout=None,
):
    """Per-pixel ``Fᵀ W F`` and ``Fᵀ W y`` with ``W = ivar / (1 + ivar s²)`` (``ivar`` without s2).

    One blocked pass: the weights of a block of stars are formed in cache and
    summed into both right away. ``products`` and ``layout`` are
    `feature_products` and `product_layout` (default: every pair ``i <= j``).
    With ``with_stats`` the same pass also returns the input statistics
    (`_stats_finish`), after the two.
    """
    n, p = y.shape
    k = features.shape[1]
    products = feature_products(features, layout) if products is None else products

    def body(acc, pb, fb, ib, yb):
        w = ib if s2 is None else ib / (1.0 + ib * s2)
        out = (acc[0] + pb.T @ w, acc[1] + fb.T @ (w * yb))
        return (*out, _stats_fold(acc[2], yb, ib, n)) if with_stats else out

    init = (jnp.zeros((products.shape[1], p), y.dtype), jnp.zeros((k, p), y.dtype))
    if with_stats:
        init = (*init, _stats_init(p, y.dtype))
    rows = block_rows(n, p, y.dtype.itemsize, _blocks.GRAM_BYTES)
    out = row_blocks(body, (products, features, ivar, y), init, rows)
    gram, rhs = _unpack_gram(out[0], k, layout), out[1].T
    return (gram, rhs, *_stats_finish(out[2])) if with_stats else (gram, rhs)


def normal_equations(
    features: Float[Array, "n k"], weights: Float[Array, "n p"], y: Float[Array, "n p"]
) -> tuple[Float[Array, "p k k"], Float[Array, "p k"]]:
    """Per-pixel ``Fᵀ W F`` and ``Fᵀ W y`` for given weights ``(n, p)``."""
    return weighted_normal(features, weights, y)


def _apply_censoring(gram, rhs, allowed):
    """Force censored terms to zero: identity rows/columns and zero right-hand side."""
    m = allowed.astype(gram.dtype)
    eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
    gram = gram * m[:, :, None] * m[:, None, :] + eye * (1.0 - m)[:, None, :]
    return gram, rhs * m


def _batched_solve(a, b):
    """``a x = b`` for every pixel, ``(p, k, k)`` and ``(p, k)``: Gauss–Jordan elimination.

    Without pivoting, one column per step of a ``fori_loop`` (vectorised over
    pixels). Every matrix solved here is symmetric positive definite (a censored,
    penalised Gram matrix of a pixel that passed `_well_posed`, or the identity
    of a pixel that did not), for which elimination without pivoting is as
    stable as Cholesky. Written out rather than LAPACK's LU (`jnp.linalg.solve`),
    which a first fit paid for twice: lowering it imports SciPy (0.4 CPU s), and
    its pivots, permutations and column-major copies are kernels to compile.
    """
    k = a.shape[-1]
    index = jnp.arange(k)
    aug = jnp.concatenate([a, b[..., None]], axis=-1)  # (p, k, k + 1)

    def step(j, aug):
        row = jax.lax.dynamic_index_in_dim(aug, j, axis=1, keepdims=False)  # (p, k + 1)
        row = row / jax.lax.dynamic_index_in_dim(row, j, axis=1, keepdims=True)
        col = jax.lax.dynamic_index_in_dim(aug, j, axis=2, keepdims=False)  # (p, k)
        col = jnp.where(index == j, 0.0, col)
        aug = aug - col[:, :, None] * row[:, None, :]
        return jnp.where((index == j)[None, :, None], row[:, None, :], aug)

    return jax.lax.fori_loop(0, k, step, aug)[..., k]


def _solve_l2(gram, rhs, penalty_diag):
    return _batched_solve(gram + jnp.eye(gram.shape[-1], dtype=gram.dtype) * penalty_diag, rhs)


def _l2_system(gram, rhs, penalty_diag, allowed):
    """θ for the L2 penalty, and the censored, penalised matrix it was solved with."""
    gram, rhs = _apply_censoring(gram, rhs, allowed)
    matrix = gram + jnp.eye(gram.shape[-1], dtype=gram.dtype) * penalty_diag
    return _batched_solve(matrix, rhs) * allowed, matrix


def _refine(matrix, theta, resid_rhs, penalty_diag, allowed):
    """One preconditioned residual step towards the L2 solution of the current weights.

    ``resid_rhs = Fᵀ W (y - F θ)``; the normal equations' residual is that minus
    ``Λ θ`` on the free terms, and ``matrix`` (an earlier round's, `_l2_system`)
    stands in for the current one.
    """
    m = allowed.astype(theta.dtype)
    resid = (resid_rhs - penalty_diag * theta) * m
    return theta + _batched_solve(matrix, resid) * m


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
    if reg_type != "l1":
        return _l2_system(gram, rhs, penalty_diag, allowed)[0]
    gram, rhs = _apply_censoring(gram, rhs, allowed)
    ridge = jnp.zeros_like(penalty_diag)
    # start FISTA from the unpenalised (tiny-ridge) solution, which is usually close
    start = jnp.where(jnp.any(init != 0.0), init, _solve_l2(gram, rhs, ridge + 1e-8))
    return _solve_l1(gram, rhs, penalty_diag, start * allowed, l1_iter) * allowed


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
    pixels, far cheaper than eigenvalues. The factorisation is right-looking,
    one column per step of a ``fori_loop`` (each step subtracts the outer
    product of the column from the trailing matrix), so the program is the
    same size for every ``k`` (an unrolled loop grew as ``k³``: 2,800 HLO
    instructions at ``k = 10``, a third of the training program).
    """
    gram, _ = _apply_censoring(gram, rhs, allowed)
    k = gram.shape[-1]
    tiny = jnp.finfo(gram.dtype).tiny
    gram = gram + jnp.eye(k, dtype=gram.dtype) * penalty
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(gram, axis1=1, axis2=2), tiny))
    tau = 10 * k * jnp.finfo(gram.dtype).eps
    a = gram / d[:, :, None] / d[:, None, :] - tau * jnp.eye(k, dtype=gram.dtype)
    ok = jnp.all(jnp.isfinite(a), axis=(1, 2))
    index = jnp.arange(k)

    def step(j, carry):
        a, ok = carry
        col = jnp.take(a, j, axis=2)  # (p, k): column j of the trailing matrix
        pivot = jnp.take(col, j, axis=1)
        ok = ok & (pivot > 0)
        low = jnp.where(index >= j, col, 0.0) / jnp.sqrt(jnp.maximum(pivot, tiny))[:, None]
        return a - low[:, :, None] * low[:, None, :], ok

    return jax.lax.fori_loop(0, k, step, (a, ok))[1]


def _stats_init(p: int, dtype) -> tuple:
    zero = jnp.zeros(p, dtype)
    return zero, jnp.full(p, -jnp.inf, dtype), zero, zero


def _stats_fold(acc: tuple, fb, ib, n_rows: int) -> tuple:
    """Fold one block of flux and ivar into the input statistics.

    Per pixel a count, the largest ivar, ``Σ ivar`` and ``Σ ivar y²``. The count
    is that of the entries with ivar > 0 on clean data, negative when some ivar
    is negative (each such entry takes ``n_rows + 1`` off it) and NaN when some
    entry is not finite: on a CPU every column sum costs about a read of the
    block, so the three share one.
    """
    seen = (ib > 0).astype(fb.dtype)  # arithmetic, not selects: these vectorise
    negative = (ib < 0).astype(fb.dtype)
    count, ivar_max, sum_ivar, sum_wyy = acc
    return (
        count + col_sum(seen - (n_rows + 1.0) * negative + 0 * fb + 0 * ib),
        jnp.maximum(ivar_max, col_max(ib)),
        sum_ivar + col_sum(ib),
        sum_wyy + col_sum(ib * fb * fb),
    )


def _stats_finish(acc: tuple) -> tuple:
    """Count, max ivar, ``Σ ivar``, ``Σ ivar y²`` per pixel; any ivar < 0; any entry not
    finite (where an entry is not finite, a negative ivar in the same pixel may go
    unflagged: the caller checks again before cleaning)."""
    count, *sums = acc
    return (count, *sums, jnp.any(count < 0), ~jnp.all(jnp.isfinite(count)))


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
