"""Per-pixel intrinsic scatter of The Cannon: a safeguarded Newton iteration.

Given squared residuals ``r²`` (stars × pixels, ``-1`` where an entry is masked)
and inverse variances, ``fit_scatter`` finds per pixel the ``s²`` that
maximises ``-½ Σ_n [log(σ²_n + s²) + r²_n / (σ²_n + s²)]``. Each iteration is
one read-only pass over the two arrays, summed over stars row block by row
block so that every operation stays vectorised over pixels (a column reduction
of a ``(stars, pixels)`` array is not vectorised by XLA on CPU, in float64
especially). With a warm start the first pass also returns the derivatives at
the start, so a round of the training loop whose scatter has barely moved costs
one or two passes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

_ROWS = 8  # stars per unrolled block of the column sums


def column_sums(row_fn, arrays, *, ops):
    """Reduce ``row_fn(*rows)`` over the leading (stars) axis of ``arrays``.

    ``row_fn`` maps one row of each array (``(p,)`` vectors) to a tuple of ``(p,)``
    vectors; ``ops`` gives, per output, ``"sum"`` or ``"max"``. Rows are taken
    ``_ROWS`` at a time in a loop whose body is unrolled, so every operation is
    elementwise over pixels.
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


def _terms(r2_n, ivar_n, u):
    """One star's share of ``g = Σ (r² - v) / v²`` and ``h = Σ (v - 2 r²) / v³`` at ``s² = u``.

    ``v = σ² + u``; ``g`` and ``h`` are twice the first and second derivatives of
    the log marginal likelihood in ``u``. A masked entry has ``ivar = 0`` and
    adds nothing. Pure arithmetic, no selects: XLA on CPU vectorises a select
    inside a reduction poorly (it halves the speed of the pass).
    """
    w = ivar_n / (1.0 + ivar_n * u)  # 1 / (σ² + u), 0 where masked
    a = r2_n * w * w
    return a - w, w * (w - 2.0 * a)


def _grad_curv(r2, ivar, u):
    """``g`` and ``h`` (see `_terms`) per pixel at ``s² = u``, one pass over the stars."""
    return column_sums(lambda r, i: _terms(r, i, u), (r2, ivar), ops=("sum", "sum"))


def _first_pass(r2, ivar, u):
    """Moments for the start and bracket, with ``g`` and ``h`` at ``u`` (one pass).

    Returns ``Σ r²``, ``max r²`` (both over unmasked entries), ``g(0)``,
    ``g(u)`` and ``h(u)`` per pixel.
    """

    def row(r2_n, ivar_n):
        r2c = r2_n * (ivar_n > 0).astype(r2_n.dtype)
        g, h = _terms(r2_n, ivar_n, u)
        return r2c, r2c, ivar_n * (r2_n * ivar_n - 1.0), g, h

    return column_sums(row, (r2, ivar), ops=("sum", "max", "sum", "sum", "sum"))


def _newton(u, g, h, lo, hi, done, var_scale, xtol):
    """One safeguarded Newton step per pixel from ``u`` given ``g(u)``, ``h(u)``."""
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
    return jnp.where(done, u, u_new), lo, hi, done | conv


@partial(jax.jit, static_argnames=("n_iter",))
def fit_scatter(
    r2: Float[Array, "n p"],
    ivar: Float[Array, "n p"],
    count: Float[Array, " p"],
    sum_var: Float[Array, " p"],
    init: Float[Array, " p"] | None = None,
    n_iter: int = 20,
    xtol: float = 1e-5,
) -> tuple[Float[Array, " p"], Bool[Array, " p"]]:
    """Per-pixel ``s²`` maximising ``-½ Σ_n [log(σ² + s²) + r² / (σ² + s²)]``.

    Args:
        r2: squared residuals (finite).
        ivar: inverse measurement variances ``1 / σ²``, 0 where an entry is
            masked (those entries drop out of every sum).
        count: number of unmasked entries per pixel; a pixel with none is
            left at ``s² = 0``.
        sum_var: ``Σ σ²`` over the unmasked entries per pixel; its mean is
            the typical ``σ²`` against which steps are measured (``s² +
            σ²``, the variance the likelihood sees).
        init: a warm start (the previous alternation's ``s²``), or None.
        n_iter: most Newton/bisection steps.
        xtol: per-pixel tolerance on the Newton step relative to ``s² + σ²``.

    The derivative ``g(u)`` is negative for ``u >= max r²``; when ``g(0) <= 0`` the
    maximum sits on the boundary ``s² = 0``. Otherwise Newton steps, in ``u``
    (exact where ``g`` is nearly linear, ``s² ≪ σ²``) or else in ``t = log u``
    (right where ``s² ≫ σ²``), are taken from the moment estimate (or ``init``)
    and accepted whenever they land inside the bracket ``[lo, hi]`` kept by the
    signs of ``g``, ends included (a converged point may equal an end); outside
    it the step is a bisection. A pixel stops once its Newton step is below
    ``xtol`` and keeps its value while the others continue. The first pass over
    the data also evaluates the derivatives at ``init``, so a warm start whose
    first step converges costs one pass.

    Returns:
        ``s²`` per pixel and whether the pixel converged within ``n_iter`` steps.
    """
    dtype = r2.dtype
    probe = jnp.zeros_like(sum_var) if init is None else jnp.maximum(init, 0.0)
    total, hi0, g0, g, h = _first_pass(r2, ivar, probe)
    interior = (g0 > 0) & (count > 0)
    hi0 = hi0 + jnp.asarray(1e-30, dtype)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    moment = (total - sum_var) / jnp.maximum(count, 1.0)
    u0 = jnp.clip(moment, 0.01 * hi0, 0.99 * hi0)
    zero = jnp.zeros_like(hi0)
    done = ~interior
    it = jnp.asarray(0)
    u, lo, hi = u0, zero, hi0
    if init is not None:  # warm start: the first step uses the derivatives at init
        valid = (init > 0) & (init < hi0)
        u1, lo1, hi1, done1 = _newton(init, g, h, zero, hi0, done, var_scale, xtol)
        u = jnp.where(valid, u1, u0)
        lo = jnp.where(valid, lo1, zero)
        hi = jnp.where(valid, hi1, hi0)
        done = jnp.where(valid, done1, done)
        it = jnp.asarray(1)

    def body(carry):
        it, u, lo, hi, done = carry
        g, h = _grad_curv(r2, ivar, u)
        u, lo, hi, done = _newton(u, g, h, lo, hi, done, var_scale, xtol)
        return it + 1, u, lo, hi, done

    def cond(carry):
        it, _, _, _, done = carry
        return (it < n_iter) & ~jnp.all(done)

    _, u, _, _, done = jax.lax.while_loop(cond, body, (it, u, lo, hi, done))
    return jnp.where(interior, u, 0.0), done
