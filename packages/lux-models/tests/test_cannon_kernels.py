"""The fast paths of the Cannon's training give the same answer as the slow ones."""

import numpy as np
import pytest

from orrery.lux import Cannon
from orrery.lux._cannon import fit as fit_kernels
from orrery.lux._cannon import scatter as scatter_kernels
from orrery.lux.datasets import synthetic_survey

P = 12


@pytest.fixture(scope="module")
def survey():
    return synthetic_survey(80, P, snr=100, intrinsic_scatter=0.01, seed=4)


def test_dirty_data_fit_equals_the_clean_equivalent(survey, x64):
    """NaN/inf entries (cleaned on the device) weigh exactly as ivar = 0 entries."""
    flux, ivar = survey.spectra.copy(), survey.ivar.copy()
    rng = np.random.default_rng(0)
    bad = rng.random(flux.shape) < 0.05
    ivar[bad] = 0.0
    clean = Cannon(3, P).fit(survey.labels, flux, ivar)
    dirty_flux, dirty_ivar = flux.copy(), ivar.copy()
    dirty_flux[bad] = np.nan
    dirty_ivar[bad & (rng.random(flux.shape) < 0.5)] = np.inf
    dirty = Cannon(3, P).fit(survey.labels, dirty_flux, dirty_ivar)
    np.testing.assert_allclose(
        np.asarray(dirty.scaled_coeffs), np.asarray(clean.scaled_coeffs), rtol=1e-12
    )
    np.testing.assert_allclose(np.asarray(dirty.scatter), np.asarray(clean.scatter), rtol=1e-12)


def test_first_pass_scans_the_inputs_and_flags_dirty_and_negative_entries():
    feats = np.ones((5, 1), np.float32)
    flux = np.ones((5, 3), np.float32)
    flux[0, 0] = 2.0
    ivar = np.ones((5, 3), np.float32)
    ivar[2, 1] = 4.0
    ivar[4, 2] = 0.0
    out = fit_kernels.weighted_normal(feats, ivar, flux, with_stats=True)
    _, _, count, ivar_max, sum_ivar, sum_wyy, negative, dirty = out
    assert not bool(negative) and not bool(dirty)
    np.testing.assert_array_equal(np.asarray(count), [5.0, 5.0, 4.0])
    np.testing.assert_array_equal(np.asarray(ivar_max), [1.0, 4.0, 1.0])
    np.testing.assert_allclose(np.asarray(sum_ivar), [5.0, 8.0, 4.0])
    np.testing.assert_allclose(np.asarray(sum_wyy), [8.0, 8.0, 4.0])
    flux[1, 2] = np.nan
    ivar[3, 0] = -1.0
    *_, negative, dirty = fit_kernels.weighted_normal(feats, ivar, flux, with_stats=True)
    assert bool(negative) and bool(dirty)
    flux[1, 2] = 1.0
    ivar[3, 0] = np.inf
    *_, negative, dirty = fit_kernels.weighted_normal(feats, ivar, flux, with_stats=True)
    assert not bool(negative) and bool(dirty)


def test_warm_scatter_at_its_answer_converges_in_one_pass(survey, x64):
    """A round whose scatter has not moved costs one pass over the data."""
    fitted = Cannon(3, P).fit(survey.labels, survey.spectra, survey.ivar)
    pred = np.asarray(fitted.predict(survey.labels))
    resid = survey.spectra - pred
    ivar = survey.ivar
    count = np.sum(ivar > 0, axis=0).astype(float)
    sum_var = np.sum(np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0), axis=0)
    cold, ok = scatter_kernels.fit_scatter(resid, ivar, count, sum_var)
    assert np.all(np.asarray(ok))
    warm, ok = scatter_kernels.fit_scatter(resid, ivar, count, sum_var, cold, n_iter=1)
    assert np.all(np.asarray(ok))
    np.testing.assert_allclose(np.asarray(warm), np.asarray(cold), rtol=1e-6)


def _fresh_fit(survey, **kw):
    import jax

    jax.clear_caches()  # the module constants below are read when the program is traced
    try:
        return Cannon(3, P).fit(survey.labels, survey.spectra, survey.ivar, **kw)
    finally:
        jax.clear_caches()


def test_refined_rounds_equal_exact_alternation(survey, x64, monkeypatch):
    """Refinement steps and scatter hand-off land where exact re-solves every round do."""
    from orrery.lux._cannon import train as _cannon_train

    fast = _fresh_fit(survey)
    monkeypatch.setattr(_cannon_train, "REFINE_MAX", -1.0)  # never refine: a Gram pass per round
    monkeypatch.setattr(_cannon_train, "HANDOFF", 0.0)  # every scatter fit to xtol
    exact = _fresh_fit(survey)
    coeffs, want = np.asarray(fast.scaled_coeffs), np.asarray(exact.scaled_coeffs)
    # measured 2e-11 (without the refinement step it would be 4e-8)
    assert np.max(np.abs(coeffs - want)) < 1e-9 * np.max(np.abs(want))
    np.testing.assert_allclose(np.asarray(fast.scatter), np.asarray(exact.scatter), rtol=1e-6)


def test_block_sizes_do_not_change_the_fit(survey, x64, monkeypatch):
    """Many blocks with a remainder (8 rows each over 80 + 3 stars) give the one-block fit."""
    from orrery.lux._cannon import blocks as _cannon_blocks

    data = synthetic_survey(83, P, snr=100, intrinsic_scatter=0.01, seed=5)
    one_block = _fresh_fit(data)
    monkeypatch.setattr(_cannon_blocks, "PASS_BYTES", 1)
    monkeypatch.setattr(_cannon_blocks, "GRAM_BYTES", 1)
    assert _cannon_blocks.block_rows(83, P, 8) == 8
    blocked = _fresh_fit(data)
    for name in ("scaled_coeffs", "scatter"):
        got, want = np.asarray(getattr(blocked, name)), np.asarray(getattr(one_block, name))
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_unaligned_host_arrays_are_copied_aligned_and_aligned_ones_shared():
    import jax

    from orrery.lux._cannon.validate import _ALIGN, _to_device

    raw = np.arange(4096 + 1, dtype=np.float32)
    unaligned = raw[1:].reshape(64, 64)  # 4 bytes past a (64-byte aligned) NumPy buffer
    assert unaligned.ctypes.data % _ALIGN != 0
    moved = _to_device(unaligned)
    np.testing.assert_array_equal(np.asarray(moved), unaligned)
    raw[1] = -1.0  # the caller's later writes do not reach the device copy
    assert float(moved[0, 0]) == 1.0
    if jax.default_backend() == "cpu":
        base = np.empty(4096 + 64, np.float32)
        start = (-base.ctypes.data) % _ALIGN // 4
        aligned = base[start : start + 4096].reshape(64, 64)
        aligned[...] = 1.0
        assert aligned.ctypes.data % _ALIGN == 0
        shared = _to_device(aligned)
        assert np.shares_memory(np.asarray(shared), aligned)


def test_gram_of_monomial_features_sums_each_distinct_product_once(x64):
    """Features that are monomials share products: the Gram pass sums each once,
    and the matrices equal those summed over every pair."""
    from orrery.lux._poly import feature_exponents, poly_features

    rng = np.random.default_rng(3)
    labels = rng.normal(size=(40, 3))
    feats = np.asarray(poly_features(labels, 2))
    ivar = rng.uniform(0.5, 2.0, size=(40, 7))
    flux = rng.normal(size=(40, 7))
    exponents = feature_exponents(3, 2)
    layout = fit_kernels.product_layout(feats.shape[1], exponents)
    assert len(layout[0]) == 35  # monomials of degree <= 4 in 3 labels, not 55 pairs
    shared, rhs = fit_kernels.weighted_normal(feats, ivar, flux, layout=layout)
    every, rhs_every = fit_kernels.weighted_normal(feats, ivar, flux)
    expected = np.einsum("np,nk,nl->pkl", ivar, feats, feats)
    np.testing.assert_allclose(np.asarray(shared), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(every), expected, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(rhs), np.asarray(rhs_every))
    assert exponents[:4] == ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1))


def test_scatter_sensitivities_equal_the_derivatives_of_the_likelihood(x64):
    """The derivatives a warm round returns to predict the next one are exact."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(5)
    n, p, k = 30, 4, 3
    feats = np.concatenate([np.ones((n, 1)), rng.normal(size=(n, k - 1))], axis=1)
    theta = rng.normal(size=(p, k))
    ivar = rng.uniform(50.0, 200.0, size=(n, p))
    flux = feats @ theta.T + rng.normal(size=(n, p)) * (1 / np.sqrt(ivar) + 0.05)
    count, sum_var = np.full(p, float(n)), np.sum(1 / ivar, axis=0)
    init = np.full(p, 0.002)
    out = scatter_kernels.fit_scatter(  # one pass: evaluated at init, away from the root
        flux, ivar, count, sum_var, init, 1, features=feats, theta=theta, with_sensitivity=True
    )
    at, g, h, q, wwr = (np.asarray(a) for a in out[2:])
    np.testing.assert_array_equal(at, init)

    def g_of(u, th):
        r = flux - feats @ th.T
        w = ivar / (1.0 + ivar * u)
        return jnp.sum(r * r * w * w - w, axis=0)

    at_j, th_j = jnp.asarray(at), jnp.asarray(theta)
    grad_u = jax.jacfwd(g_of, argnums=0)
    np.testing.assert_allclose(g, g_of(at_j, th_j), rtol=1e-10)
    np.testing.assert_allclose(h, jnp.diagonal(grad_u(at_j, th_j)), rtol=1e-10)
    dh = jax.jacfwd(lambda u: jnp.diagonal(grad_u(u, th_j)))(at_j)
    np.testing.assert_allclose(q, jnp.diagonal(dh), rtol=1e-9)
    dg_dtheta = jax.jacfwd(g_of, argnums=1)(at_j, th_j)  # (p, p, k): pixel i, θ of pixel j
    np.testing.assert_allclose(-2.0 * wwr, jnp.einsum("iik->ik", dg_dtheta), rtol=1e-10)


@pytest.mark.parametrize(("degree", "bias"), [(2, True), (3, False)])
def test_host_features_equal_the_device_features(degree, bias):
    """The features a fit forms in NumPy are those `poly_features` forms on the device."""
    from orrery.lux._poly import poly_features, poly_features_host

    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    host = poly_features_host(x, degree, bias)
    assert host.dtype == np.float32
    np.testing.assert_array_equal(host, np.asarray(poly_features(x, degree, bias)))


def _offset_copy(a: np.ndarray) -> np.ndarray:
    """``a`` copied 16 bytes past a 64-byte boundary (as a large NumPy array sits)."""
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + 16
    out = buf[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_padded_outputs_change_no_number(monkeypatch):
    """Outputs padded to a multiple of PAD_OUTPUTS (when the data are copied anyway)
    give the fit of the unpadded data bit for bit, cut back to the real outputs."""
    from orrery.lux._cannon import validate

    p = 13
    s = synthetic_survey(90, p, snr=100, intrinsic_scatter=0.01, seed=5)
    labels = _offset_copy(s.labels.astype(np.float32))
    flux, ivar = _offset_copy(s.spectra.astype(np.float32)), _offset_copy(s.ivar.astype(np.float32))
    ivar[::7, 4] = 0.0  # a masked entry or two
    widths = []
    real = validate.training_data

    def spy(f, i):
        out = real(f, i)
        widths.append(out[0].shape[1])
        return out

    monkeypatch.setattr(validate, "training_data", spy)
    fits = {}
    for pad in (8, 1):
        monkeypatch.setattr(validate, "PAD_OUTPUTS", pad)
        fits[pad] = Cannon(3, p).fit(labels, flux, ivar, regularization=0.01)
    import jax

    if jax.default_backend() == "cpu":
        assert widths == [16, p]  # the padded program ran
    for name in ("coeffs", "scaled_coeffs", "scatter", "usable"):
        got, want = np.asarray(getattr(fits[8], name)), np.asarray(getattr(fits[1], name))
        assert got.shape == want.shape and got.shape[0] == p
        np.testing.assert_array_equal(got, want)
