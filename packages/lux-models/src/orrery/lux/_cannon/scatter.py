"""Per-pixel intrinsic scatter of The Cannon: a safeguarded Newton iteration.

Given the flux, the model's prediction (features and coefficients) and the
inverse variances, ``fit_scatter`` finds per pixel the ``s²`` that maximises
``-½ Σ_n [log(σ²_n + s²) + r²_n / (σ²_n + s²)]`` with ``r`` the residual. Each
iteration is one read-only pass over flux and ivar in blocks of stars
(`orrery.lux._cannon.blocks`): the residuals are formed block by block, never
stored. With a warm start the first pass also returns the derivatives at the
start, so a round of the training loop whose scatter has barely moved costs one
or two passes. On request each pass also accumulates ``Fᵀ W r`` (``W`` the
weights ``1 / (σ² + s²)`` at the point evaluated), the residual of the normal
equations that the training loop needs to refine the coefficients.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .blocks import block_rows, col_max, col_sum, row_blocks

#: per-pixel tolerance of the scatter's Newton step, relative to ``s² + σ²``
XTOL = 1e-5


def _terms(r2, ivar, u):
    """Per entry ``(r² - v) / v²`` and ``(v - 2 r²) / v³`` at ``s² = u``, and ``1 / v``.

    ``v = σ² + u``; summed over stars these are ``g`` and ``h``, twice the first
    and second derivatives of the log marginal likelihood in ``u``. A masked
    entry has ``ivar = 0`` and adds nothing. Pure arithmetic, no selects (XLA on
    CPU vectorises a select inside a reduction poorly).
    """
    w = ivar / (1.0 + ivar * u)  # 1 / (σ² + u), 0 where masked
    a = r2 * w * w
    return a - w, w * (w - 2.0 * a), w


def _residuals(flux, features, theta):
    return flux if features is None else flux - features @ theta.T


def _pass(
    flux,
    ivar,
    features,
    theta,
    u,
    *,
    first: bool,
    with_rhs: bool,
    with_sens: bool,
    total=False,
    mix=None,
):
    """One blocked pass: ``g(u)``, ``h(u)`` (and ``Fᵀ W(u) r`` with ``with_rhs``).

    With ``first`` it also returns ``max r²`` over unmasked entries and ``g(0)``
    (and, first of all, with ``total`` their ``Σ r²``), ahead of the others. With
    ``with_sens`` it also returns, last, ``q(u) = dh/du`` and ``Fᵀ W(u)² r``
    (``-d/du`` of ``Fᵀ W r``; ``-½ dg/dθ``). With ``mix`` (a 0/1 scalar, data,
    not static; ``with_rhs`` and ``with_sens`` False) it returns, last, ``q(u)``
    and ``Fᵀ W(u)^(1 + mix) r``: either matrix from one program.
    """
    n, p = flux.shape
    dtype = flux.dtype
    k = 1 if features is None else features.shape[1]
    feats = jnp.zeros((n, 1), dtype) if features is None else features

    def body(acc, fb, yb, ib):
        r = _residuals(yb, None if features is None else fb, theta)
        r2 = r * r
        g, h, w = _terms(r2, ib, u)
        out = []
        if first:
            r2c = r2 * (ib > 0).astype(dtype)
            out += [col_sum(r2c)] if total else []
            out += [col_max(r2c), col_sum(ib * (r2 * ib - 1.0))]
        out += [col_sum(g), col_sum(h)]
        if with_rhs:
            out.append(fb.T @ (w * r))
        if with_sens:
            ww = w * w
            out += [col_sum(ww * (6.0 * r2 * ww - 2.0 * w)), fb.T @ (ww * r)]
        if mix is not None:  # w (1 - mix + mix w): exactly w or w² (no select)
            ww = w * w
            out += [col_sum(ww * (6.0 * r2 * ww - 2.0 * w)), fb.T @ ((w * (keep + mix * w)) * r)]
        ops = ((["sum"] if total else []) + ["max", "sum"]) if first else []
        ops += ["sum"] * (len(out) - len(ops))
        return tuple(
            jnp.maximum(a, o) if op == "max" else a + o
            for a, o, op in zip(acc, out, ops, strict=True)
        )

    keep = None if mix is None else 1.0 - mix
    zero = jnp.zeros(p, dtype)
    init = [zero] * (2 + bool(total)) if first else []
    init += [zero, zero]
    if with_rhs:
        init.append(jnp.zeros((k, p), dtype))
    if with_sens or mix is not None:
        init += [zero, jnp.zeros((k, p), dtype)]
    rows = block_rows(n, p, dtype.itemsize)
    return row_blocks(body, (feats, flux, ivar), tuple(init), rows)


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
    # a Newton step this small leaves the next one near round-off (quadratic convergence)
    newton_step = jnp.where(use_u | use_t, step, jnp.inf)
    return jnp.where(done, u, u_new), lo, hi, done | conv, newton_step


def _start(init, g, h, u0, zero, hi0, done, var_scale, xtol):
    """The loop's first carry ``(it, u, lo, hi, done, step)``.

    Cold (``init`` None): ``u0`` in the full bracket ``[zero, hi0]``, no step
    taken. Warm: pixels whose ``init`` lies strictly inside ``(0, hi0)`` take
    the first Newton step with the derivatives ``g``, ``h`` already evaluated
    there; the others keep the cold start.
    """
    it = jnp.asarray(0)
    step = jnp.full_like(u0, jnp.inf)
    if init is None:
        return it, u0, zero, hi0, done, step
    valid = (init > 0) & (init < hi0)
    u1, lo1, hi1, done1, step1 = _newton(init, g, h, zero, hi0, done, var_scale, xtol)
    return (
        jnp.asarray(1),
        jnp.where(valid, u1, u0),
        jnp.where(valid, lo1, zero),
        jnp.where(valid, hi1, hi0),
        jnp.where(valid, done1, done),
        jnp.where(valid, step1, step),
    )


@partial(jax.jit, static_argnames=("n_iter", "with_rhs", "with_sensitivity"))
def fit_scatter(
    flux: Float[Array, "n p"],
    ivar: Float[Array, "n p"],
    count: Float[Array, " p"],
    sum_var: Float[Array, " p"],
    init: Float[Array, " p"] | None = None,
    n_iter: int = 20,
    xtol: float = XTOL,
    *,
    features: Float[Array, "n k"] | None = None,
    theta: Float[Array, "p k"] | None = None,
    with_rhs: bool = False,
    handoff: float = 0.0,
    with_sensitivity: bool = False,
    mix: Float[Array, ""] | None = None,
):
    """Per-pixel ``s²`` maximising ``-½ Σ_n [log(σ² + s²) + r² / (σ² + s²)]``.

    Args:
        flux: the data (finite); the residuals are ``flux - features @ thetaᵀ``,
            or ``flux`` itself when ``features`` is None.
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
        features: ``(n, k)`` features of the model, or None.
        theta: ``(p, k)`` coefficients of the model (with ``features``).
        handoff: stop once every pixel has converged or its last Newton step
            (relative, as ``xtol``) is below ``handoff``: the training loop,
            which warm-starts the next round here, finishes those pixels in
            its next pass (their ``converged`` is False until then). 0: run to
            ``xtol``.
        with_rhs: also return ``Fᵀ W r`` ``(p, k)`` with the weights of the last
            point evaluated, and that point (within ``xtol`` of the returned
            ``s²`` where it converged).
        with_sensitivity: also return, at the last point evaluated, ``g``, ``h``,
            ``q = dh/du`` and ``Fᵀ W² r`` ``(p, k)``: enough to predict, without a
            pass, the next Newton step after a small change of ``s²`` and ``θ``.
        mix: instead of either (both False), return at the last point evaluated
            ``g``, ``h``, ``q`` and ``Fᵀ W^(1 + mix) r``: ``mix`` 0 gives
            ``with_rhs``'s matrix, 1 ``with_sensitivity``'s. It is data, so a
            caller that needs either in different rounds compiles one program.

    The derivative ``g(u)`` is negative for ``u >= max r²``; when ``g(0) <= 0`` the
    maximum sits on the boundary ``s² = 0``. Otherwise Newton steps, in ``u``
    (exact where ``g`` is nearly linear, ``s² ≪ σ²``) or else in ``t = log u``
    (right where ``s² ≫ σ²``), are taken from ``init`` (else the moment estimate)
    and accepted whenever they land inside the bracket ``[lo, hi]`` kept by the
    signs of ``g``, ends included (a converged point may equal an end); outside
    it the step is a bisection. A pixel stops once its Newton step is below
    ``xtol`` and keeps its value while the others continue. The first pass over
    the data also evaluates the derivatives at ``init``, so a warm start whose
    first step converges costs one pass.

    Returns:
        ``s²`` per pixel, whether the pixel converged within ``n_iter`` steps,
        with ``with_rhs`` ``Fᵀ W r`` and the ``s²`` it was evaluated at, and with
        ``with_sensitivity`` that point (unless already returned) and the four
        quantities above; with ``mix``, ``(s², converged, at, g, h, q, matrix)``.
    """
    dtype = flux.dtype
    if mix is not None and (with_rhs or with_sensitivity):
        raise ValueError("mix: not with with_rhs or with_sensitivity")
    mix = None if mix is None else jnp.asarray(mix, dtype)
    passes = partial(
        _pass,
        flux,
        ivar,
        features,
        theta,
        with_rhs=with_rhs,
        with_sens=with_sensitivity,
        mix=mix,
    )
    probe = jnp.zeros_like(sum_var) if init is None else jnp.maximum(init, 0.0)
    out = passes(probe, first=True, total=init is None)
    total, out = (out[0], out[1:]) if init is None else (None, out)
    hi0, g0, g, h, *rhs = out
    last = (g, h, *rhs)
    interior = (g0 > 0) & (count > 0)
    hi0 = hi0 + jnp.asarray(1e-30, dtype)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    # the start: the moment estimate cold, the start given (where it is not usable) warm
    # (total is None exactly when init is given)
    guess = probe if total is None else (total - sum_var) / jnp.maximum(count, 1.0)
    u0 = jnp.clip(guess, 0.01 * hi0, 0.99 * hi0)
    zero = jnp.zeros_like(hi0)
    it, u, lo, hi, done, step = _start(init, g, h, u0, zero, hi0, ~interior, var_scale, xtol)

    def body(carry):
        it, u, lo, hi, done, _, _, _ = carry
        at = jnp.where(interior, u, 0.0)  # a boundary pixel's answer is 0
        g, h, *rhs = passes(at, first=False)
        u, lo, hi, done, step = _newton(u, g, h, lo, hi, done, var_scale, xtol)
        return it + 1, u, lo, hi, done, step, (g, h, *rhs), at

    def cond(carry):
        it, _, _, _, done, step, _, _ = carry
        return (it < n_iter) & ~jnp.all(done | (step < handoff))

    carry = (it, u, lo, hi, done, step, last, probe)
    _, u, _, _, done, _, last, at = jax.lax.while_loop(cond, body, carry)
    s2 = jnp.where(interior, u, 0.0)
    g, h, *extra = last
    out = (s2, done)
    if with_rhs:
        out += (extra.pop(0).T, at)
    if with_sensitivity or mix is not None:
        q, d = extra
        out += (g, h, q, d.T) if with_rhs else (at, g, h, q, d.T)
    return out
