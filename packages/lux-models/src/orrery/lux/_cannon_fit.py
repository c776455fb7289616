"""Vectorised training kernels of The Cannon (all pixels at once).

Per pixel ``p`` the model is ``y_np = θ_p · φ(x_n) + noise`` with variance
``σ²_np + s²_p``. Training alternates two exact sub-steps, each vectorised over
pixels:

1. coefficients: weighted least squares with weights ``1 / (σ² + s²)`` plus an
   L2 (closed form) or L1 (FISTA proximal gradient) penalty on non-bias terms;
2. scatter: the maximiser of the per-pixel marginal likelihood in ``s²``, found
   by safeguarded Newton iterations on its derivative.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


def normal_equations(
    features: Float[Array, "n k"], weights: Float[Array, "n p"], y: Float[Array, "n p"]
) -> tuple[Float[Array, "p k k"], Float[Array, "p k"]]:
    """Per-pixel ``Fᵀ W F`` and ``Fᵀ W y`` as two matrix products (no ``n×p×k`` temporary)."""
    n, k = features.shape
    outer = (features[:, :, None] * features[:, None, :]).reshape(n, k * k)
    gram = (weights.T @ outer).reshape(-1, k, k)
    rhs = (weights * y).T @ features
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
    gram, rhs = _apply_censoring(gram, rhs, allowed)
    if reg_type == "l1":
        ridge = jnp.zeros_like(penalty_diag)
        # start FISTA from the unpenalised (tiny-ridge) solution, which is usually close
        start = jnp.where(jnp.any(init != 0.0), init, _solve_l2(gram, rhs, ridge + 1e-8))
        return _solve_l1(gram, rhs, penalty_diag, start * allowed, l1_iter) * allowed
    return _solve_l2(gram, rhs, penalty_diag) * allowed


@partial(jax.jit, static_argnames=("n_iter",))
def fit_scatter(
    resid: Float[Array, "n p"],
    noise_var: Float[Array, "n p"],
    mask: Float[Array, "n p"],
    init: Float[Array, " p"] | None = None,
    n_iter: int = 20,
) -> Float[Array, " p"]:
    """Per-pixel ``s²`` maximising ``-½ Σ_n [log(σ² + s²) + r² / (σ² + s²)]``.

    The derivative ``g(u) = ½ Σ (r² - v) / v²`` (``v = σ² + u``) is negative for
    ``u >= max r²``; when ``g(0) <= 0`` the maximum sits on the boundary ``s² = 0``.
    Otherwise a Newton iteration kept inside a shrinking bracket finds the root.
    """
    r2 = resid * resid * mask
    # an infinite variance removes a masked entry from every sum below
    var = jnp.where(mask > 0, noise_var, jnp.inf)
    hi0 = jnp.max(r2, axis=0) + 1e-30

    def grad_hess(u):
        iv = 1.0 / (var + u[None, :])
        a = r2 * iv * iv
        g = jnp.sum(a - iv, axis=0)
        h = jnp.sum(iv * iv - 2.0 * a * iv, axis=0)
        return g, h

    g0, _ = grad_hess(jnp.zeros_like(hi0))
    interior = g0 > 0
    n_eff = jnp.maximum(jnp.sum(mask, axis=0), 1.0)
    moment = jnp.sum(r2 - mask * noise_var, axis=0) / n_eff
    u0 = jnp.clip(moment, 0.01 * hi0, 0.99 * hi0)
    if init is not None:  # warm start from the previous alternation
        u0 = jnp.where((init > 0) & (init < hi0), init, u0)

    def body(carry):
        it, u, lo, hi, _ = carry
        g, h = grad_hess(u)
        lo = jnp.where(g > 0, u, lo)
        hi = jnp.where(g > 0, hi, u)
        newton = u - g / jnp.where(h < 0, h, -jnp.inf)
        inside = (newton > lo) & (newton < hi) & jnp.isfinite(newton)
        u_new = jnp.where(inside, newton, 0.5 * (lo + hi))
        step = jnp.max(jnp.where(interior, jnp.abs(u_new - u) / jnp.maximum(u_new, 1e-30), 0.0))
        return it + 1, u_new, lo, hi, step

    def cond(carry):
        it, _, _, _, step = carry
        return (it < n_iter) & (step > 1e-4)

    zero = jnp.zeros_like(hi0)
    init_c = (jnp.asarray(0), u0, zero, hi0, jnp.asarray(jnp.inf, hi0.dtype))
    _, u, _, _, _ = jax.lax.while_loop(cond, body, init_c)
    return jnp.where(interior, u, 0.0)


@jax.jit
def residuals(features, coeffs, y, mask):
    return (y - features @ coeffs.T) * mask


@jax.jit
def ml_scatter_unknown_noise(resid, mask):
    """Without measurement errors the maximum-likelihood ``s²`` is the masked mean of ``r²``."""
    return jnp.sum(resid**2, axis=0) / jnp.maximum(jnp.sum(mask, axis=0), 1.0)


@partial(jax.jit, static_argnames=("reg_type", "known_noise", "fit_scatter_", "max_iter"))
def fit_all(
    features,
    y,
    mask,
    noise_var,
    base_w,
    penalty,
    allowed,
    tol,
    reg_type: str,
    known_noise: bool,
    fit_scatter_: bool,
    max_iter: int,
):
    """The whole training loop in one compiled program.

    Coefficients with the base weights, then up to ``max_iter`` rounds of
    (scatter given θ, θ given the new weights) until the scatter's largest
    relative change is below ``tol``.

    Returns:
        coefficients ``(p, k)``, ``s²`` ``(p,)`` and the number of rounds.
    """
    p, k = y.shape[1], features.shape[1]
    zeros = jnp.zeros((p, k), y.dtype)
    coeffs = solve_coefficients(features, base_w, y, penalty, allowed, zeros, reg_type=reg_type)
    s2 = jnp.zeros(p, y.dtype)
    if not fit_scatter_:
        return coeffs, s2, jnp.asarray(0)

    def body(state):
        it, theta, s2_old, _ = state
        resid = residuals(features, theta, y, mask)
        if known_noise:
            s2_new = fit_scatter(resid, noise_var, mask, s2_old)
            w = mask / (noise_var + s2_new[None, :] + (1.0 - mask))
        else:
            s2_new = ml_scatter_unknown_noise(resid, mask)
            w = mask / jnp.maximum(s2_new[None, :], 1e-30)
        theta = solve_coefficients(features, w, y, penalty, allowed, theta, reg_type=reg_type)
        s_old, s_new = jnp.sqrt(s2_old), jnp.sqrt(s2_new)
        change = jnp.max(jnp.abs(s_new - s_old) / jnp.maximum(s_new, 1e-12))
        return it + 1, theta, s2_new, change

    def cond(state):
        it, _, _, change = state
        return (it < max_iter) & (change >= tol)

    init = (jnp.asarray(0), coeffs, s2, jnp.asarray(jnp.inf, y.dtype))
    it, coeffs, s2, _ = jax.lax.while_loop(cond, body, init)
    return coeffs, s2, it
