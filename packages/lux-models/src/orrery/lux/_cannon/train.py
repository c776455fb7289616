"""The training loop of The Cannon: one compiled program for a whole fit.

Training alternates, vectorised over pixels, the coefficients given the
weights ``1 / (σ² + s²)`` (`orrery.lux._cannon.fit`) and the intrinsic scatter
given the coefficients (`orrery.lux._cannon.scatter.fit_scatter`), until the
scatter settles. Every step is a blocked pass over the data that materialises
nothing of its size, and after the first round a round whose weights moved by
less than `REFINE_MAX` (relative) refines the coefficients with an earlier
round's normal-equation matrix instead of building a new one: one
preconditioned residual step, whose residual ``Fᵀ W r`` the scatter pass
accumulates on the way, so such a round reads the data once. The round after
the first exact solve also sums the derivatives that predict the next round
(`_predicted_round` in `_train`); when that round would change the scatter by
less than the tolerance, it is taken from them without reading the data. A
typical fit so reads the data five times: the base normal equations, two
scatter passes, the Gram matrix at the new weights, and one more scatter pass.

No pass sits inside a conditional outside the loop: XLA on the CPU copies a
conditional's operands, and a copy of the data costs as much as a pass (the
first round inside the loop, re-solved in a branch, made a warm fit about a
fifth slower). The predicted round and the loop's rounds share one loop body,
their kind a number in its state, so the program holds the scatter fit twice
(the first round's and the loop's), not three times.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .blocks import block_rows, col_sum, row_blocks
from .fit import (
    _l2_system,
    _refine,
    _well_posed,
    feature_products,
    product_layout,
    solve_from_gram,
    weighted_normal,
)
from .scatter import XTOL, fit_scatter

#: largest relative weight change a round may refine across (else it re-solves)
REFINE_MAX = 1e-3
#: Newton steps below this (relative) are finished by the next round's pass, not this one's
HANDOFF = 1e-2


#: the arguments of `fit_all` that select its program
_STATIC = (
    "reg_type",
    "known_noise",
    "fit_scatter_",
    "max_iter",
    "l1_iter",
    "exponents",
    "n_outputs",
)
#: XLA options for the training program on a CPU. Its compile time goes to LLVM,
#: once per distinct fused kernel (about 120-170 of them, whatever the data's shape);
#: the classic kernel emitters at LLVM's -O1 compile them about a quarter to a third
#: faster than the fusion emitters at -O2 (2,000 × 200: 3.9 -> 2.6 CPU s; 2,000 ×
#: 8,575: 4.8 -> 3.6), the same numbers bit for bit, warm fits within ~10 %.
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}


@cache
def training_program():
    """`fit_all`'s jitted program, with `CPU_COMPILER_OPTIONS` when the default backend is a CPU.

    Built on first use (the backend is known only then) and kept, so that every
    fit shares one jit cache.
    """
    options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {}
    return jax.jit(_fit_all, static_argnames=_STATIC, compiler_options=options)


def fit_all(*args, **kwargs):
    """The whole training loop in one compiled program (`_fit_all`, through `training_program`)."""
    return training_program()(*args, **kwargs)


def _fit_all(
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
    exponents: tuple[tuple[int, ...], ...] | None = None,
    n_outputs: int | None = None,
):
    """The whole training loop in one compiled program.

    The first pass over ``flux`` and ``ivar`` builds the base normal equations
    and scans the inputs (`orrery.lux._cannon.fit._stats_fold`); if any ivar is
    negative or any entry is not finite, nothing else runs and the flags say
    so (then `clean_inputs` and call again). Clean data are finite with ``ivar
    >= 0``; an entry with ``ivar = 0`` is masked. Without measurement noise
    (``known_noise`` False) ``ivar`` is the 0/1 mask. A pixel is usable when it
    is seen by at least as many stars as it has free (uncensored) coefficients
    and its normal equations are well posed; unusable pixels get zero
    coefficients and scatter.

    Coefficients with the base weights, then up to ``max_iter`` rounds of
    (scatter given θ, θ given the new weights) until the largest relative
    change of ``s² + σ²`` (``σ²`` the pixel's harmonic-mean measurement variance)
    is below ``tol`` and every pixel's scatter has converged. A round's θ step is
    exact (a new Gram matrix and solve) unless, with the L2 penalty, every
    usable pixel's weights moved by at most `REFINE_MAX` relative since the
    last exact solve: then it is one preconditioned residual step (`_refine`)
    with that solve's matrix, which shrinks the distance to the exact θ by
    that factor. The last round (change below ``tol``) takes such a step too
    where it may, and otherwise keeps θ, solved with a scatter within ``tol``
    of the returned one. The first round always solves exactly. With the L2
    penalty and measurement noise the second round predicts the third from its
    pass's derivatives and ends the fit when that round would change the
    scatter by less than ``tol`` and every pixel's Newton step is within the
    scatter tolerance (then θ is refined to the second round's scatter and the
    scatter takes the predicted step); otherwise it is discarded and the
    rounds go on as described. With the L2 penalty a scatter fit hands pixels whose
    Newton step is already small (`HANDOFF`) to the next round's pass instead
    of spending a pass of its own on them. Without measurement noise the
    weights are ``1 / s²`` per pixel, so the Gram matrices of the first solve
    are rescaled instead of recomputed.

    ``exponents``: the features' monomial exponents when they are monomials
    of the labels (`orrery.lux._poly.feature_exponents`), so that Gram passes
    sum each distinct product once (`product_layout`).

    ``n_outputs``: when the data carry padding columns after the real outputs
    (`orrery.lux._cannon.validate.PAD_OUTPUTS`; masked, ``ivar = 0``, and
    censored, ``allowed`` False), the number of real ones: the per-output
    results are cut to them in the program. Padding changes no real output's
    numbers (every pass is per output; what is reduced over outputs skips the
    unusable ones).

    Returns:
        coefficients ``(p, k)``, ``s²`` ``(p,)``, usable ``(p,)``, scatter
        converged ``(p,)``, whether any ivar is negative and whether any entry
        is not finite.
    """
    layout = product_layout(features.shape[1], exponents)
    products = feature_products(features, layout)
    base = weighted_normal(features, ivar, flux, None, products, with_stats=True, layout=layout)
    *base, negative, dirty = base
    run = partial(
        _train,
        features,
        products,
        flux,
        ivar,
        tuple(base),
        penalty,
        allowed,
        tol,
        reg_type=reg_type,
        known_noise=known_noise,
        fit_scatter_=fit_scatter_,
        max_iter=max_iter,
        l1_iter=l1_iter,
        layout=layout,
    )
    p, k = flux.shape[1], features.shape[1]
    dtype = flux.dtype

    def skip():
        return jnp.zeros((p, k), dtype), jnp.zeros(p, dtype), jnp.zeros(p, bool), jnp.ones(p, bool)

    out = jax.lax.cond(negative | dirty, skip, run)
    if n_outputs is not None:
        out = tuple(o[:n_outputs] for o in out)
    return (*out, negative, dirty)


def _train(
    features,
    products,
    flux,
    ivar,
    base,
    penalty,
    allowed,
    tol,
    *,
    reg_type: str,
    known_noise: bool,
    fit_scatter_: bool,
    max_iter: int,
    l1_iter: int,
    layout,
):
    """`fit_all` after its first pass, on clean data.

    ``base`` is what that pass returned: the normal equations with the ivar
    weights, and per pixel the count of entries, the largest ivar, ``Σ ivar``
    and ``Σ ivar y²``.
    """
    base_gram, base_rhs, count, ivar_max, sum_ivar, sum_wyy = base
    dtype = flux.dtype
    # a pixel's typical σ² (harmonic mean, count / Σ ivar) scales its tolerances
    sum_var = count * count / jnp.maximum(sum_ivar, jnp.finfo(dtype).tiny)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    n_free = jnp.sum(allowed, axis=1)
    usable = (count >= jnp.maximum(n_free, 1)) & (n_free > 0)
    allowed = allowed & usable[:, None]
    n, p = flux.shape
    rows = block_rows(n, p, dtype.itemsize)

    zeros = jnp.zeros((p, features.shape[1]), dtype)
    s2 = jnp.zeros(p, dtype)
    # too little information also means normal equations that the labels leave singular
    usable = usable & _well_posed(base_gram, base_rhs, penalty, allowed)
    allowed = allowed & usable[:, None]
    n_good = jnp.where(usable, count, 0.0)
    solve = partial(solve_from_gram, reg_type=reg_type, l1_iter=l1_iter)
    refinable = fit_scatter_ and known_noise and reg_type == "l2"
    if refinable:  # the matrix of this solve preconditions later rounds' refinement
        coeffs, ref_matrix = _l2_system(base_gram, base_rhs, penalty, allowed)
    else:
        coeffs, ref_matrix = solve(base_gram, base_rhs, penalty, allowed, zeros), None
    all_conv = jnp.ones(p, bool)
    if not fit_scatter_:
        return coeffs, s2, usable, all_conv
    # the first scatter fit starts where the base fit's χ² puts it: E[χ²] ≈ (N - k)(1 + s² ivar)
    chi2 = (
        sum_wyy
        - 2.0 * jnp.sum(coeffs * base_rhs, axis=1)
        + jnp.einsum("pk,pkl,pl->p", coeffs, base_gram, coeffs)
    )
    dof = jnp.maximum(n_good - n_free, 1.0)
    start = (chi2 - dof) / jnp.maximum(sum_ivar * dof / jnp.maximum(n_good, 1.0), 1e-30)
    # below this relative change of s the re-solved θ equals the current one to round-off
    still = jnp.asarray(max(float(jnp.finfo(dtype).eps) * 64, 1e-12), dtype)
    # after the first round (outside the loop: no pass in a conditional) one loop runs
    # every round, the predicted one (with the L2 penalty and noise: it may settle the
    # fit) and the loop's, its kind data rather than code: the program holds two scatter
    # fits, not one per kind of round
    first_kind, predict_kind, loop_kind = (jnp.asarray(i, jnp.int32) for i in range(3))
    c = _Rounds(
        features,
        products,
        flux,
        ivar,
        layout,
        base_gram,
        base_rhs,
        penalty,
        allowed,
        usable,
        n_good,
        sum_var,
        var_scale,
        ivar_max,
        start,
        still,
        tol,
        rows,
        dtype,
        solve,
        known_noise,
        refinable,
        refinable and max_iter > 1,
        max_iter,
        all_conv,
        predict_kind,
        loop_kind,
    )
    ref_matrix = ref_matrix if refinable else jnp.zeros((), dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    init = (
        first_kind,
        jnp.asarray(0),
        coeffs,
        s2,
        inf,
        all_conv,
        s2,
        ref_matrix,
        jnp.asarray(True),
    )
    state = _round(c, init, first=True)  # cold scatter and exact solve, outside the loop
    state = jax.lax.while_loop(partial(_cond, c), partial(_round, c), state)
    _, _, coeffs, s2, _, conv, _, _, _ = state
    return coeffs, jnp.where(usable, s2, 0.0), usable, conv


class _Rounds(NamedTuple):
    """What `_train`'s scatter/θ rounds share (trace-time values and static flags)."""

    features: Any
    products: Any
    flux: Any
    ivar: Any
    layout: Any
    base_gram: Any
    base_rhs: Any
    penalty: Any
    allowed: Any
    usable: Any
    n_good: Any
    sum_var: Any
    var_scale: Any
    ivar_max: Any
    start: Any
    still: Any
    tol: Any
    rows: int
    dtype: Any
    solve: Any
    known_noise: bool
    refinable: bool
    predicting: bool
    max_iter: int
    all_conv: Any
    predict_kind: Any
    loop_kind: Any


def _normal(c: _Rounds, s2):
    # masked entries have ivar = 0, which zeroes their weight in every sum below;
    # unusable pixels keep theirs, but their coefficients are censored to 0 and
    # their scatter is not fitted (count 0), so nothing of them reaches the result
    return weighted_normal(c.features, c.ivar, c.flux, s2, c.products, layout=c.layout)


def weight_shift(new, old, ivar_max, usable):
    """Largest relative change of any usable weight ``1 / (σ² + s²)`` from s²=old to new."""
    shift = jnp.abs(new - old) * ivar_max / (1.0 + ivar_max * new)
    return jnp.max(jnp.where(usable, shift, 0.0))


def _weight_shift(c: _Rounds, new, old):
    return weight_shift(new, old, c.ivar_max, c.usable)


def _total_r2(c: _Rounds, theta):
    def body(acc, fb, yb, mb):
        r = yb - fb @ theta.T
        return acc + col_sum(r * r * mb)

    p = c.flux.shape[1]
    return row_blocks(body, (c.features, c.flux, c.ivar), jnp.zeros(p, c.dtype), c.rows)


def _round(c: _Rounds, state, first: bool = False):
    """Scatter given θ, then θ given the new weights (exactly, by refinement, or kept).

    ``first``: the first round, traced apart (cold start, always re-solved);
    otherwise the round's kind is ``state[0]``.
    """
    kind, it, theta, s2_old, _, _, ref_s2, ref_matrix, exact = state
    dtype, refinable, loop_kind = c.dtype, c.refinable, c.loop_kind
    predict = kind == c.predict_kind
    if c.known_noise:
        # in the loop with refinement every pass also sums Fᵀ W r (loop rounds) or,
        # in the predicted round, q and Fᵀ W² r: one matrix, chosen by data
        out = fit_scatter(
            c.flux,
            c.ivar,
            c.n_good,
            c.sum_var,
            c.start if first else s2_old,
            features=c.features,
            theta=theta,
            handoff=HANDOFF if refinable else 0.0,
            mix=predict.astype(dtype) if refinable and not first else None,
        )
        s2_new, conv = out[:2]
    else:
        s2_new = _total_r2(c, theta) / jnp.maximum(c.n_good, 1.0)
        conv = c.all_conv
    # relative change of the variance the likelihood sees, s² + (typical σ²)
    floor = c.var_scale if c.known_noise else 0.0
    rel = jnp.abs(s2_new - s2_old) / jnp.maximum(s2_new + floor, jnp.finfo(dtype).tiny)
    change = jnp.max(jnp.where(c.usable, rel, 0.0))
    moving = (change > c.still) & (change >= c.tol)

    def resolve(_):
        if c.known_noise:
            gram, rhs = _normal(c, s2_new)
        else:
            scale = 1.0 / jnp.maximum(s2_new, 1e-30)
            gram, rhs = c.base_gram * scale[:, None, None], c.base_rhs * scale[:, None]
        if refinable:
            new, matrix = _l2_system(gram, rhs, c.penalty, c.allowed)
            return new, s2_new, matrix, jnp.asarray(True)
        return c.solve(gram, rhs, c.penalty, c.allowed, theta), ref_s2, ref_matrix, exact

    def keep(_):
        return theta, ref_s2, ref_matrix, exact

    if first:
        # solved for the new weights even when they barely moved: a conditional
        # around a pass costs XLA a copy of the data on the CPU, more than the pass
        theta, ref_s2, ref_matrix, exact = resolve(None)
        after = c.predict_kind if c.predicting else loop_kind
        return after, it + 1, theta, s2_new, change, conv, ref_s2, ref_matrix, exact
    if not refinable:
        theta, ref_s2, ref_matrix, exact = jax.lax.cond(moving, resolve, keep, None)
        return loop_kind, it + 1, theta, s2_new, change, conv, ref_s2, ref_matrix, exact

    at, matrix = out[2], out[6]
    # the step aims at the weights the residual was summed with: they must be s2_new's
    near = (_weight_shift(c, s2_new, ref_s2) <= REFINE_MAX) & (
        _weight_shift(c, at, s2_new) <= REFINE_MAX
    )

    def refine(_):
        step = _refine(ref_matrix, theta, matrix, c.penalty, c.allowed)
        return step, ref_s2, ref_matrix, jnp.asarray(False)

    # θ solved exactly for these very weights already: the step would be zero
    done = exact & jnp.all(jnp.where(c.usable, at == ref_s2, True))
    branch = jnp.where(near & ~done, 1, jnp.where(moving & ~near, 2, 0))
    # the predicted round's θ comes from `_predicted_round`, not from a branch
    branch = jnp.where(predict, 0, branch)
    step = jax.lax.switch(branch, (keep, refine, resolve), None)
    new = (loop_kind, it + 1, step[0], s2_new, change, conv, *step[1:])
    if not c.predicting:
        return new
    settled, final = _predicted_round(c, theta, s2_new, out[2:], ref_s2, ref_matrix, exact)
    # unsettled, the predicted round is as if not taken: the loop's rounds take it again
    predicted = jax.tree.map(
        lambda a, b: jnp.where(settled, a, b), (it + 2, *final), tuple(state[1:])
    )
    return jax.tree.map(lambda a, b: jnp.where(predict, a, b), (loop_kind, *predicted), new)


def _predicted_round(c: _Rounds, theta, s2_new, sensitivity, ref_s2, ref_matrix, exact):
    """The round after this one, predicted from this pass's derivatives, when small.

    ``sensitivity`` is `fit_scatter`'s ``(at, g, h, q, Fᵀ W² r)``: this round
    evaluated the scatter's derivatives at ``at``. Where θ was
    solved exactly there, to first order in ``Δ = s2_new - at`` the normal
    equations' residual at ``s2_new`` is ``Λθ - Δ Fᵀ W² r``, and one
    refinement step with it gives the θ of ``s2_new``. The next round's Newton
    step at that θ is then predicted from ``g``, ``h``, ``q = dh/du`` and
    ``dg/dθ = -2 Fᵀ W² r`` (errors of order ``Δ³`` and ``Δθ²``). If the weights
    moved by at most `REFINE_MAX` and that step is below ``tol`` and the
    per-pixel tolerance everywhere, the fit is settled without another pass.

    Returns:
        whether it is settled, and the final round's ``(θ, s², change,
        converged, ref_s2, matrix, exact)``.
    """
    settled, new_theta, s2_next, change = predicted_step(
        theta,
        s2_new,
        sensitivity,
        ref_s2,
        ref_matrix,
        exact,
        (c.penalty, c.allowed, c.usable, c.var_scale, c.ivar_max),
        c.tol,
    )
    final = (new_theta, s2_next, change, c.all_conv, ref_s2, ref_matrix, jnp.asarray(False))
    return settled, final


def predicted_step(theta, s2_new, sensitivity, ref_s2, ref_matrix, exact, consts, tol):
    """`_predicted_round`'s prediction, shared with the streaming fit.

    ``consts`` is ``(penalty, allowed, usable, var_scale, ivar_max)``. Returns
    whether the fit is settled, and the predicted θ, s² and change.
    """
    penalty, allowed, usable, var_scale, ivar_max = consts
    at, g, h, q, wwr = sensitivity
    delta = s2_new - at
    exact_here = exact & jnp.all(jnp.where(usable, at == ref_s2, True))
    can_refine = exact_here & (weight_shift(s2_new, ref_s2, ivar_max, usable) <= REFINE_MAX)
    resid = penalty * theta - delta[:, None] * wwr
    new_theta = _refine(ref_matrix, theta, resid, penalty, allowed)
    g_next = g + h * delta + 0.5 * q * delta * delta
    g_next = g_next - 2.0 * jnp.sum(wwr * (new_theta - theta), axis=1)
    h_next = h + q * delta
    inside = s2_new > 0
    ok = inside & (h_next < 0)
    step = jnp.where(ok, -g_next / jnp.where(ok, h_next, -1.0), 0.0)
    s2_next = jnp.where(inside, jnp.maximum(s2_new + step, 0.0), 0.0)
    rel = jnp.abs(step) / jnp.maximum(s2_next + var_scale, jnp.finfo(theta.dtype).tiny)
    rel = jnp.where(usable, jnp.where(inside & ~ok, jnp.inf, rel), 0.0)
    change = jnp.max(rel)
    settled = can_refine & (change < tol) & jnp.all(rel < XTOL)
    return settled, new_theta, s2_next, change


def _cond(c: _Rounds, state):
    kind, it, _, _, change, conv, _, _, _ = state
    # with hand-off a round may leave pixels one Newton step short: finish them too
    unfinished = jnp.any(c.usable & ~conv) if c.refinable else False
    # the predicted round always runs (the first ran before the loop)
    return (kind != c.loop_kind) | ((it < c.max_iter) & ((change >= c.tol) | unfinished))
