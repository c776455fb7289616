"""The Cannon recovers known truth on synthetic surveys at realistic label scales."""

import numpy as np
import pytest

from orrery.interface import (
    ArtifactError,
    ConfigError,
    NotFittedError,
    ShapeError,
    ValueDomainError,
)
from orrery.lux import Cannon, LabelInference
from orrery.lux._cannon.fit import normal_equations
from orrery.lux._poly import poly_features
from orrery.lux.datasets import synthetic_survey

N_TRAIN, N_PIX = 200, 100
SCATTER = 0.01


@pytest.fixture(scope="module")
def survey():
    return synthetic_survey(N_TRAIN + 100, N_PIX, snr=100, intrinsic_scatter=SCATTER, seed=3)


@pytest.fixture(scope="module")
def train(survey):
    return survey.labels[:N_TRAIN], survey.spectra[:N_TRAIN], survey.ivar[:N_TRAIN]


@pytest.fixture(scope="module")
def fitted(train):
    return Cannon(3, N_PIX).fit(*train)


def _truth_in_cannon_basis(survey, cannon):
    """Re-express the true coefficients in the Cannon's own label scaling."""
    rng = np.random.default_rng(0)
    lo, hi = survey.labels.min(0), survey.labels.max(0)
    lab = rng.uniform(lo, hi, size=(400, 3))
    phi_true = poly_features((lab - survey.label_offset) / survey.label_scale, 2)
    phi_cannon = np.asarray(cannon.get_features(np.asarray(cannon.scale_labels(lab))))
    t, *_ = np.linalg.lstsq(phi_cannon, np.asarray(phi_true), rcond=None)
    return survey.coeffs @ t.T


def test_n_features_and_feature_order():
    assert Cannon(3, 10).n_features == 10
    assert Cannon(3, 10, poly_degree=3).n_features == 20
    assert Cannon(2, 10, include_bias=False).n_features == 5
    feats = Cannon(2, 10, poly_degree=2).get_features(np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(np.asarray(feats), [[1, 1, 2, 1, 2, 4]])


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        Cannon(2, 3).predict(np.zeros((1, 2)))
    with pytest.raises(RuntimeError):
        Cannon(2, 3).infer_labels(np.zeros((1, 3)))


def test_fit_returns_new_fitted_instance(fitted):
    assert fitted.is_fitted and not Cannon(3, N_PIX).is_fitted
    assert fitted.coeffs.shape == (N_PIX, 10)
    assert fitted.scatter.shape == (N_PIX,)


def test_labels_are_scaled_by_median_and_percentile_span(fitted, train):
    labels = train[0]
    np.testing.assert_allclose(np.asarray(fitted.label_offset), np.median(labels, 0), rtol=1e-5)
    lo, hi = np.percentile(labels, [2.5, 97.5], axis=0)
    np.testing.assert_allclose(np.asarray(fitted.label_scale), 0.5 * (hi - lo), rtol=1e-5)


def test_recovers_true_coefficients(survey, fitted):
    truth = _truth_in_cannon_basis(survey, fitted)
    got = np.asarray(fitted.scaled_coeffs)
    err = got - truth
    # bias terms to a fraction of the noise, label terms to a small fraction of their spread
    assert np.sqrt(np.mean(err[:, 0] ** 2)) < 0.004
    lin = slice(1, 4)
    assert np.sqrt(np.mean(err[:, lin] ** 2)) < 0.15 * np.std(truth[:, lin])
    assert np.corrcoef(got[:, lin].ravel(), truth[:, lin].ravel())[0, 1] > 0.98


def test_recovers_intrinsic_scatter_within_30_percent(fitted):
    s = np.asarray(fitted.scatter)
    assert abs(np.median(s) / SCATTER - 1) < 0.3
    # most pixels individually within 30%
    assert np.mean(np.abs(s / SCATTER - 1) < 0.3) > 0.5


def test_scatter_is_zero_when_none_injected():
    s = synthetic_survey(N_TRAIN, N_PIX, snr=100, intrinsic_scatter=0.0, seed=5)
    c = Cannon(3, N_PIX).fit(s.labels, s.spectra, s.ivar)
    # the noise alone explains the residuals: scatter far below the noise level (~0.01)
    assert np.median(np.asarray(c.scatter)) < 0.003


def test_unknown_noise_scatter_is_residual_rms(train):
    labels, flux, _ = train
    c = Cannon(3, N_PIX).fit(labels, flux)
    resid = flux - np.asarray(c.predict(labels))
    np.testing.assert_allclose(np.asarray(c.scatter), np.sqrt(np.mean(resid**2, 0)), rtol=2e-3)


def test_test_step_recovers_labels(survey, fitted):
    res = fitted.infer_labels(survey.spectra[N_TRAIN:], survey.ivar[N_TRAIN:])
    assert isinstance(res, LabelInference)
    assert res.labels.shape == (100, 3) and res.covariance.shape == (100, 3, 3)
    assert res.chi2.shape == (100,) and res.converged.all()
    err = res.labels - survey.labels[N_TRAIN:]
    rms = np.sqrt(np.mean(err**2, axis=0))
    assert rms[0] < 80 and rms[1] < 0.15 and rms[2] < 0.08, rms
    pulls = err / res.uncertainties
    assert 0.7 < np.std(pulls) < 1.4
    # χ² per pixel near 1 with variance σ² + s²
    assert 0.7 < np.median(res.chi2) / N_PIX < 1.3


def test_test_step_single_spectrum_and_initial_labels(survey, fitted):
    one = fitted.infer_labels(survey.spectra[N_TRAIN], survey.ivar[N_TRAIN], n_starts=1)
    assert one.labels.shape == (3,)
    assert abs(one.labels[0] - survey.labels[N_TRAIN, 0]) < 300


def test_missing_pixels_are_ignored(survey):
    s = synthetic_survey(
        N_TRAIN + 100, N_PIX, intrinsic_scatter=SCATTER, seed=3, bad_pixel_fraction=0.05
    )
    assert np.isnan(s.spectra).any()
    c = Cannon(3, N_PIX).fit(s.labels[:N_TRAIN], s.spectra[:N_TRAIN], s.ivar[:N_TRAIN])
    assert np.isfinite(np.asarray(c.coeffs)).all() and np.isfinite(np.asarray(c.scatter)).all()
    res = c.infer_labels(s.spectra[N_TRAIN:], s.ivar[N_TRAIN:])
    assert np.isfinite(res.labels).all()
    assert np.sqrt(np.mean((res.labels[:, 0] - s.labels[N_TRAIN:, 0]) ** 2)) < 100


def test_l2_regularization_shrinks_non_bias_terms(train):
    labels, flux, ivar = train
    free = Cannon(3, N_PIX).fit(labels, flux, ivar, fit_scatter=False)
    strong = Cannon(3, N_PIX).fit(labels, flux, ivar, 1e9, fit_scatter=False)
    assert np.max(np.abs(np.asarray(strong.scaled_coeffs)[:, 1:])) < 1e-3
    # the bias is not penalised: it becomes the weighted mean flux
    w_mean = np.sum(ivar * flux, 0) / np.sum(ivar, 0)
    np.testing.assert_allclose(np.asarray(strong.scaled_coeffs)[:, 0], w_mean, atol=1e-3)
    mid = Cannon(3, N_PIX).fit(labels, flux, ivar, 1e4, fit_scatter=False)
    assert np.sum(np.asarray(mid.scaled_coeffs)[:, 1:] ** 2) < np.sum(
        np.asarray(free.scaled_coeffs)[:, 1:] ** 2
    )


def test_l1_solution_satisfies_optimality_conditions(train, x64):
    labels, flux, ivar = train
    lam = 3e3
    c = Cannon(3, N_PIX).fit(labels, flux, ivar, lam, regularization_type="l1", fit_scatter=False)
    theta = np.asarray(c.scaled_coeffs)  # the penalty acts in the fit's (scaled) basis
    assert np.mean(theta[:, 1:] == 0.0) > 0.1  # sparsity
    feats = poly_features(np.asarray(c.scale_labels(labels)), 2)
    gram, rhs = normal_equations(feats, ivar, flux)
    grad = 2 * (np.einsum("pkl,pl->pk", np.asarray(gram), theta) - np.asarray(rhs))
    scale = lam
    # bias: zero gradient; non-zero terms: grad = -λ sign θ; zero terms: |grad| <= λ
    assert np.max(np.abs(grad[:, 0])) < 1e-3 * scale
    nz = theta[:, 1:] != 0
    g = grad[:, 1:]
    np.testing.assert_allclose(g[nz], -lam * np.sign(theta[:, 1:][nz]), atol=1e-3 * scale)
    assert np.all(np.abs(g[~nz]) <= lam * (1 + 1e-3))


def test_censoring_forbids_terms(train):
    labels, flux, ivar = train
    mask = np.zeros((N_PIX, 10), bool)
    mask[:20, 1] = True  # no linear Teff term in the first 20 pixels
    mask[:20, 4:7] = True  # nor any quadratic Teff term
    c = Cannon(3, N_PIX).fit(labels, flux, ivar, censoring_mask=mask)
    theta = np.asarray(c.scaled_coeffs)
    assert np.all(theta[mask] == 0.0)
    assert np.all(theta[20:, 1] != 0.0)


def test_bad_inputs_raise_clear_errors(train):
    labels, flux, ivar = train
    with pytest.raises(ShapeError, match="labels"):
        Cannon(2, N_PIX).fit(labels, flux, ivar)
    with pytest.raises(ShapeError, match="output"):
        Cannon(3, N_PIX).fit(labels, flux[:-1], ivar[:-1])
    with pytest.raises(ShapeError, match="output_ivar"):
        Cannon(3, N_PIX).fit(labels, flux, ivar[:, :-1])
    const = labels.copy()
    const[:, 1] = 2.0
    with pytest.raises(ValueDomainError, match="spread"):
        Cannon(3, N_PIX).fit(const, flux, ivar)
    with pytest.raises(ConfigError, match="regularization"):
        Cannon(3, N_PIX).fit(labels, flux, ivar, -1.0)


def test_save_load_round_trip(tmp_path, fitted, survey):
    path = fitted.save(tmp_path / "cannon")
    back = Cannon.load(path)
    assert back.poly_degree == 2 and back.is_fitted
    lab = survey.labels[N_TRAIN:]
    np.testing.assert_array_equal(np.asarray(back.predict(lab)), np.asarray(fitted.predict(lab)))
    np.testing.assert_array_equal(np.asarray(back.scatter), np.asarray(fitted.scatter))
    from orrery.interface import save_artifact

    save_artifact(tmp_path / "other", kind="something.else", config={}, arrays={})
    with pytest.raises(ArtifactError):
        Cannon.load(tmp_path / "other")


def test_unfitted_cannon_with_given_coeffs_uses_raw_labels():
    coeffs = np.array([[1.0, 2.0, 3.0]])
    c = Cannon(2, 1, poly_degree=1, coeffs=coeffs, scatter=np.zeros(1))
    np.testing.assert_allclose(np.asarray(c.predict(np.array([[1.0, 1.0]]))), [[6.0]])
