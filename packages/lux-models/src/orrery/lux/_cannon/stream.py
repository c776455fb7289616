"""Training The Cannon from a `SpectraSource`, one chunk of stars at a time.

Every step of the in-memory training loop (`orrery.lux._cannon.train.fit_all`)
that reads the data is a sum over stars: the normal equations with their input
statistics (`weighted_normal`) and each pass of the scatter's Newton iteration
(`orrery.lux._cannon.scatter._pass`). Here the same rounds run on the host, and
each such pass is a loop over chunks of a fixed number of stars, each chunk
folded in by one small compiled kernel (the very kernels of the in-memory fit);
everything between passes (solves, Newton steps, the round's decisions) is
per pixel. Memory is then bounded by the chunk size, which the caller's byte
budget sets, and not by the number of stars.

The last chunk is padded to the full chunk size with rows of zero weight (flux,
ivar and labels 0), which add nothing to any sum, so one compiled program
serves every chunk. A chunk found holding a non-finite entry is cleaned as
`orrery.lux._cannon.fit.clean_inputs` cleans the in-memory data (the entry is
masked), and cleaned again whenever it is read; a negative or, at a finite
flux, infinite inverse variance is refused. The next chunk is read on a
background thread while the current one is summed.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._poly import feature_exponents, poly_features
from .._source import SpectraSource
from . import validate as _validate
from .chunks import (
    Chunk,
    Reader,
    align_to_source,
    chunk_rows,
    clean,
    parse_budget,
    refuse_bad_ivar,
    release_freed_memory,
    resident_chunks,
    source_labels,
    source_shape,
)
from .fit import (
    _l2_system,
    _refine,
    _well_posed,
    feature_products,
    product_layout,
    solve_from_gram,
    weighted_normal,
)
from .scatter import XTOL, _newton, _pass
from .train import HANDOFF, REFINE_MAX, predicted_step, weight_shift


# ---------------------------------------------------------------- per-chunk kernels
@partial(jax.jit, static_argnames=("degree", "include_bias", "exponents", "with_stats"))
def gram_chunk(
    labels, flux, ivar, offset, scale, s2, *, degree, include_bias, exponents, with_stats
):
    """One chunk's normal equations (`weighted_normal`), with its input statistics."""
    feats = poly_features((labels - offset) / scale, degree, include_bias)
    layout = product_layout(feats.shape[1], exponents)
    products = feature_products(feats, layout)
    return weighted_normal(feats, ivar, flux, s2, products, with_stats=with_stats, layout=layout)


@partial(jax.jit, static_argnames=("degree", "include_bias", "first", "with_rhs", "with_sens"))
def scatter_chunk(
    labels, flux, ivar, offset, scale, theta, u, *, degree, include_bias, first, with_rhs, with_sens
):
    """One chunk's sums of a scatter pass (`orrery.lux._cannon.scatter._pass`)."""
    feats = poly_features((labels - offset) / scale, degree, include_bias)
    return _pass(flux, ivar, feats, theta, u, first=first, with_rhs=with_rhs, with_sens=with_sens)


@partial(jax.jit, static_argnames=("first_is_max",))
def merge(acc, out, first_is_max: bool = False):
    """``acc + out`` entry by entry (the first entry by maximum with ``first_is_max``)."""
    merged = [a + o for a, o in zip(acc, out, strict=True)]
    if first_is_max:
        merged[0] = jnp.maximum(acc[0], out[0])
    return tuple(merged)


@jax.jit
def merge_base(acc, out):
    """Sum two chunks' base normal equations and statistics (the largest ivar by maximum)."""
    gram, rhs, count, ivar_max, sum_ivar, sum_wyy = acc
    g2, r2, c2, m2, s2, w2 = out
    return gram + g2, rhs + r2, count + c2, jnp.maximum(ivar_max, m2), sum_ivar + s2, sum_wyy + w2


def _throttle(previous, out):
    """Wait for the chunk before ``out``'s: JAX dispatches asynchronously, and a loop
    that ran ahead would hold every chunk it has read until its kernel ran. Returns ``out``."""
    if previous is not None:
        jax.block_until_ready(previous)
    return out


class Passes:
    """The passes of the training loop, each a loop over the chunks of ``reader``."""

    def __init__(self, reader: Reader, offset, scale, degree: int, include_bias: bool):
        self.reader, self.offset, self.scale = reader, offset, scale
        self.opts = {"degree": degree, "include_bias": include_bias}
        self.exponents = feature_exponents(reader.labels.shape[1], degree, include_bias)

    def _gram(self, chunk: Chunk, s2, with_stats: bool):
        return gram_chunk(
            chunk.labels,
            chunk.flux,
            chunk.ivar,
            self.offset,
            self.scale,
            s2,
            exponents=self.exponents,
            with_stats=with_stats,
            **self.opts,
        )

    def base(self):
        """The base normal equations and input statistics; dirty chunks are cleaned."""
        acc = None
        for chunk in self.reader:
            *sums, negative, dirty = self._gram(chunk, None, True)
            start, stop = self.reader.bounds(chunk.index)
            if bool(negative) or bool(dirty):
                refuse_bad_ivar(chunk.host_flux, chunk.host_ivar, start, stop)
                self.reader.dirty.add(chunk.index)
                cleaned = clean(chunk.host_flux, chunk.host_ivar)
                chunk = self.reader.device_chunk(chunk.index, *cleaned)
                *sums, _, _ = self._gram(chunk, None, True)
            self.reader.keep(chunk)
            acc = tuple(sums) if acc is None else merge_base(acc, tuple(sums))
        assert acc is not None
        self.reader.checked = True
        return acc

    def normal(self, s2):
        """``Fᵀ W F`` and ``Fᵀ W y`` at the weights ``1 / (σ² + s²)``."""
        acc = previous = None
        for chunk in self.reader:
            out = self._gram(chunk, s2, False)
            previous = _throttle(previous, out)
            acc = out if acc is None else merge(acc, out)
        assert acc is not None
        return acc

    def scatter(self, theta, u, *, first: bool, with_rhs: bool, with_sens: bool):
        """The sums of one scatter pass at ``s² = u`` (as `_pass`, ``total`` False)."""
        acc = previous = None
        for chunk in self.reader:
            out = scatter_chunk(
                chunk.labels,
                chunk.flux,
                chunk.ivar,
                self.offset,
                self.scale,
                theta,
                u,
                first=first,
                with_rhs=with_rhs,
                with_sens=with_sens,
                **self.opts,
            )
            previous = _throttle(previous, out)
            acc = out if acc is None else merge(acc, out, first_is_max=first)
        assert acc is not None
        return acc


@jax.jit
def _warm_start(init, hi0, g0, g, h, count, sum_var, xtol):
    """`fit_scatter`'s state after its first pass, for a warm start ``init``."""
    interior = (g0 > 0) & (count > 0)
    hi0 = hi0 + jnp.asarray(1e-30, hi0.dtype)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    probe = jnp.maximum(init, 0.0)
    u0 = jnp.clip(probe, 0.01 * hi0, 0.99 * hi0)
    zero = jnp.zeros_like(hi0)
    done = ~interior
    valid = (init > 0) & (init < hi0)
    u1, lo1, hi1, done1, step1 = _newton(init, g, h, zero, hi0, done, var_scale, xtol)
    u = jnp.where(valid, u1, u0)
    lo = jnp.where(valid, lo1, zero)
    hi = jnp.where(valid, hi1, hi0)
    done = jnp.where(valid, done1, done)
    step = jnp.where(valid, step1, jnp.full_like(u0, jnp.inf))
    return interior, var_scale, u, lo, hi, done, step


_newton_step = jax.jit(_newton)


@jax.jit
def _scatter_stop(done, step, handoff):
    return jnp.all(done | (step < handoff))


def fit_scatter(
    passes: Passes,
    count,
    sum_var,
    init,
    theta,
    *,
    with_rhs: bool = False,
    handoff: float = 0.0,
    with_sensitivity: bool = False,
    n_iter: int = 20,
    xtol: float = XTOL,
):
    """`orrery.lux._cannon.scatter.fit_scatter` with a warm start, a chunked pass per step.

    Returns what that function returns for the same arguments.
    """
    run = partial(passes.scatter, theta, with_rhs=with_rhs, with_sens=with_sensitivity)
    dtype = sum_var.dtype
    xtol_ = jnp.asarray(xtol, dtype)
    probe = jnp.maximum(init, 0.0)
    hi0, g0, g, h, *rhs = run(probe, first=True)
    last = (g, h, *rhs)
    interior, var_scale, u, lo, hi, done, step = _warm_start(
        init, hi0, g0, g, h, count, sum_var, xtol_
    )
    it, at = 1, probe
    while it < n_iter and not bool(_scatter_stop(done, step, handoff)):
        at = jnp.where(interior, u, 0.0)
        last = run(at, first=False)
        u, lo, hi, done, step = _newton_step(u, last[0], last[1], lo, hi, done, var_scale, xtol_)
        it += 1
    s2 = jnp.where(interior, u, 0.0)
    g, h, *extra = last
    out: tuple[Any, ...] = (s2, done)
    if with_rhs:
        out += (extra.pop(0).T, at)
    if with_sensitivity:
        q, d = extra
        out += (g, h, q, d.T) if with_rhs else (at, g, h, q, d.T)
    return out


# ---------------------------------------------------------------- the training rounds
@partial(jax.jit, static_argnames=("reg_type", "refinable", "l1_iter"))
def _setup(base, penalty, allowed, *, reg_type: str, refinable: bool, l1_iter: int):
    """`_train`'s start from the base pass: usable pixels, the base solve, the scatter start."""
    base_gram, base_rhs, count, _, sum_ivar, sum_wyy = base
    dtype = base_rhs.dtype
    sum_var = count * count / jnp.maximum(sum_ivar, jnp.finfo(dtype).tiny)
    var_scale = sum_var / jnp.maximum(count, 1.0)
    n_free = jnp.sum(allowed, axis=1)
    usable = (count >= jnp.maximum(n_free, 1)) & (n_free > 0)
    allowed = allowed & usable[:, None]
    usable = usable & _well_posed(base_gram, base_rhs, penalty, allowed)
    allowed = allowed & usable[:, None]
    n_good = jnp.where(usable, count, 0.0)
    if refinable:
        coeffs, ref_matrix = _l2_system(base_gram, base_rhs, penalty, allowed)
    else:
        zeros = jnp.zeros_like(base_rhs)
        coeffs = solve_from_gram(base_gram, base_rhs, penalty, allowed, zeros, reg_type, l1_iter)
        ref_matrix = jnp.zeros((), dtype)
    chi2 = (
        sum_wyy
        - 2.0 * jnp.sum(coeffs * base_rhs, axis=1)
        + jnp.einsum("pk,pkl,pl->p", coeffs, base_gram, coeffs)
    )
    dof = jnp.maximum(n_good - n_free, 1.0)
    start = (chi2 - dof) / jnp.maximum(sum_ivar * dof / jnp.maximum(n_good, 1.0), 1e-30)
    return usable, allowed, n_good, sum_var, var_scale, coeffs, ref_matrix, start


@jax.jit
def _change(s2_new, s2_old, var_scale, usable):
    """The round's largest relative change of ``s² + σ²`` over usable pixels."""
    rel = jnp.abs(s2_new - s2_old) / jnp.maximum(s2_new + var_scale, jnp.finfo(s2_new.dtype).tiny)
    return jnp.max(jnp.where(usable, rel, 0.0))


@jax.jit
def _warm_branch(s2_new, evaluated_at, ref_s2, exact, moving, ivar_max, usable):
    """0 keep, 1 refine, 2 re-solve: `_train`'s choice for a warm round."""
    near = (weight_shift(s2_new, ref_s2, ivar_max, usable) <= REFINE_MAX) & (
        weight_shift(evaluated_at, s2_new, ivar_max, usable) <= REFINE_MAX
    )
    done = exact & jnp.all(jnp.where(usable, evaluated_at == ref_s2, True))
    return jnp.where(near & ~done, 1, jnp.where(moving & ~near, 2, 0))


_refine_step = jax.jit(_refine)


_predicted_round = jax.jit(predicted_step)


class _State(NamedTuple):
    it: int
    theta: Any
    s2: Any
    change: float
    conv: Any
    ref_s2: Any
    ref_matrix: Any
    exact: Any


_l2_solve = jax.jit(_l2_system)
_solve = jax.jit(solve_from_gram, static_argnames=("reg_type", "l1_iter"))


class Trainer:
    """`orrery.lux._cannon.train._train` (with measurement noise) over chunked passes.

    The same rounds, decisions and stopping rule; each pass over the data is
    `Passes`' loop over chunks and everything per pixel is a small program.
    """

    def __init__(
        self,
        passes: Passes,
        base,
        penalty,
        allowed,
        tol: float,
        *,
        reg_type: str,
        fit_scatter_: bool,
        max_iter: int,
        l1_iter: int = 500,
    ):
        self.passes, self.penalty = passes, penalty
        self.reg_type, self.fit_scatter_ = reg_type, fit_scatter_
        self.max_iter, self.l1_iter = max_iter, l1_iter
        self.refinable = fit_scatter_ and reg_type == "l2"
        dtype = base[1].dtype
        self.tol_arr = jnp.asarray(tol, dtype)
        self.tol = float(self.tol_arr)
        self.still = max(float(jnp.finfo(dtype).eps) * 64, 1e-12)
        self.ivar_max = base[3]
        setup = _setup(
            base, penalty, allowed, reg_type=reg_type, refinable=self.refinable, l1_iter=l1_iter
        )
        self.usable, self.allowed, self.n_good, self.sum_var, self.var_scale = setup[:5]
        self.coeffs, self.ref_matrix, self.start = setup[5:]

    def run(self):
        """Coefficients, ``s²``, usable and scatter-converged, as `fit_all` returns them."""
        p = self.usable.shape[0]
        all_conv = jnp.ones(p, bool)
        zeros = jnp.zeros(p, self.start.dtype)
        if not self.fit_scatter_:
            return self.coeffs, zeros, self.usable, all_conv
        exact = jnp.asarray(True)
        state = _State(0, self.coeffs, zeros, np.inf, all_conv, zeros, self.ref_matrix, exact)
        state = self.round(state, first=True)
        if self.refinable and self.max_iter > 1:
            state = self.round(state, predict=True)
        while self.proceed(state):
            state = self.round(state)
        return state.theta, jnp.where(self.usable, state.s2, 0.0), self.usable, state.conv

    def proceed(self, state: _State) -> bool:
        unfinished = self.refinable and bool(jnp.any(self.usable & ~state.conv))
        return state.it < self.max_iter and (state.change >= self.tol or unfinished)

    def resolve(self, s2_new, state: _State):
        """θ re-solved at the weights of ``s2_new`` (a Gram pass and a solve)."""
        gram, rhs = self.passes.normal(s2_new)
        if self.refinable:
            theta, matrix = _l2_solve(gram, rhs, self.penalty, self.allowed)
            return theta, s2_new, matrix, jnp.asarray(True)
        theta = _solve(
            gram,
            rhs,
            self.penalty,
            self.allowed,
            state.theta,
            reg_type=self.reg_type,
            l1_iter=self.l1_iter,
        )
        return theta, state.ref_s2, state.ref_matrix, state.exact

    def round(self, state: _State, first: bool = False, predict: bool = False) -> _State:
        """Scatter given θ, then θ given the new weights (exactly, by refinement, or kept)."""
        warm = self.refinable and not first
        out = fit_scatter(
            self.passes,
            self.n_good,
            self.sum_var,
            self.start if first else state.s2,
            state.theta,
            with_rhs=warm and not predict,
            handoff=HANDOFF if self.refinable else 0.0,
            with_sensitivity=predict,
        )
        s2_new, conv = out[:2]
        change = float(_change(s2_new, state.s2, self.var_scale, self.usable))
        moving = change > self.still and change >= self.tol
        kept = (state.theta, state.ref_s2, state.ref_matrix, state.exact)
        if predict:
            consts = (self.penalty, self.allowed, self.usable, self.var_scale, self.ivar_max)
            settled, theta, s2_next, change_p = _predicted_round(
                state.theta, s2_new, out[2:], *kept[1:], consts, self.tol_arr
            )
            if not bool(settled):  # as if not taken: the loop's rounds take it again
                return state
            done = jnp.ones_like(conv)
            return _State(
                state.it + 2, theta, s2_next, float(change_p), done, *kept[1:3], jnp.asarray(False)
            )
        if first or (not warm and moving):
            step = self.resolve(s2_new, state)
        elif not warm:
            step = kept
        else:
            resid_rhs, evaluated_at = out[2], out[3]
            branch = int(
                _warm_branch(
                    s2_new,
                    evaluated_at,
                    state.ref_s2,
                    state.exact,
                    jnp.asarray(moving),
                    self.ivar_max,
                    self.usable,
                )
            )
            if branch == 1:
                theta = _refine_step(
                    state.ref_matrix, state.theta, resid_rhs, self.penalty, self.allowed
                )
                step = (theta, state.ref_s2, state.ref_matrix, jnp.asarray(False))
            else:
                step = self.resolve(s2_new, state) if branch == 2 else kept
        return _State(state.it + 1, step[0], s2_new, change, conv, *step[1:])


def fit_source(
    model,
    source: SpectraSource,
    regularization: float,
    regularization_type: str,
    censoring_mask,
    fit_scatter_: bool,
    max_iter: int,
    tol: float,
    memory_budget: int | float | str | None,
):
    """`Cannon.fit` from a source: ``(θ, s², usable, converged, offset, scale, allowed)``."""
    budget = parse_budget(memory_budget)
    release_freed_memory()  # what an earlier fit freed, before this one allocates
    n, p = source_shape(source, model.output_size)
    dtype = np.dtype(jnp.result_type(float))
    rows = align_to_source(chunk_rows(budget, n, p, model.n_features, dtype.itemsize), source)
    resident = resident_chunks(budget, rows, p, model.n_features, dtype.itemsize)
    preload: dict = {}
    labels = source_labels(source, rows, model.label_size, preload, resident, dtype.itemsize)
    # the array path's checks of the labels and arguments, with a stand-in for the flux
    stand_in = np.broadcast_to(np.zeros((), dtype), (n, p))
    labels, _, _, offset, scale, allowed = _validate.fit_inputs(
        model,
        labels,
        stand_in,
        None,
        regularization,
        regularization_type,
        censoring_mask,
        max_iter,
    )
    penalty = np.full(model.n_features, float(regularization))
    if model.include_bias:
        penalty[0] = 0.0
    reader = Reader(source, labels, rows, dtype, resident, preload)
    off, sc = jnp.asarray(offset, dtype), jnp.asarray(scale, dtype)
    passes = Passes(reader, off, sc, model.poly_degree, model.include_bias)
    trainer = Trainer(
        passes,
        passes.base(),
        jnp.asarray(penalty, dtype),
        jnp.asarray(allowed),
        tol,
        reg_type=regularization_type,
        fit_scatter_=bool(fit_scatter_),
        max_iter=int(max_iter),
    )
    trained = trainer.run()
    del trainer, passes, reader  # the resident chunks, handed back before returning
    release_freed_memory()
    return (*trained, offset, scale, allowed)
