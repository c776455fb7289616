"""Bad input to The Cannon: flagged or refused, never a confident answer from no data."""

import json

import jax
import numpy as np
import pytest

from orrery.interface import ArtifactError, ConfigError, ValueDomainError
from orrery.lux import Cannon
from orrery.lux.datasets import synthetic_survey

N, P = 120, 16


@pytest.fixture(scope="module")
def survey():
    return synthetic_survey(N + 20, P, snr=100, seed=7)


def _train(s):
    return s.labels[:N], s.spectra[:N].copy(), s.ivar[:N].copy()


def test_dead_pixel_is_flagged_and_changes_no_labels(survey, x64):
    labels, flux, ivar = _train(survey)
    dead = 5
    ivar[:, dead] = 0.0
    flux[:, dead] = np.nan
    with pytest.warns(UserWarning, match="1 of 16 pixels"):
        c = Cannon(3, P).fit(labels, flux, ivar)
    assert np.asarray(c.usable).tolist() == [j != dead for j in range(P)]
    assert np.all(np.isfinite(np.asarray(c.coeffs)))
    assert np.all(np.isnan(np.asarray(c.predict(labels[:2]))[:, dead]))
    keep = np.arange(P) != dead
    without = Cannon(3, P - 1).fit(labels, flux[:, keep], ivar[:, keep])
    test_flux, test_ivar = survey.spectra[N:], survey.ivar[N:]  # the dead pixel has data here
    got = c.infer_labels(test_flux, test_ivar)
    want = without.infer_labels(test_flux[:, keep], test_ivar[:, keep])
    np.testing.assert_allclose(got.labels, want.labels, rtol=1e-9)
    np.testing.assert_allclose(got.uncertainties, want.uncertainties, rtol=1e-7)
    assert got.converged.all()


def test_pixel_seen_by_fewer_stars_than_features_is_unusable(survey):
    labels, flux, ivar = _train(survey)
    ivar[9:, 3] = 0.0  # 9 stars < 10 features
    with pytest.warns(UserWarning, match="1 of 16 pixels"):
        c = Cannon(3, P).fit(labels, flux, ivar)
    assert not bool(c.usable[3]) and int(np.sum(np.asarray(c.usable))) == P - 1
    np.testing.assert_array_equal(np.asarray(c.coeffs)[3], 0.0)


@pytest.fixture(scope="module")
def fitted(survey):
    return Cannon(3, P).fit(*_train(survey))


@pytest.mark.parametrize("what", ["zero_ivar", "nan_flux"])
def test_spectrum_without_data_is_flagged(fitted, survey, what):
    flux, ivar = survey.spectra[N : N + 3].copy(), survey.ivar[N : N + 3].copy()
    if what == "zero_ivar":
        ivar[1] = 0.0
    else:
        flux[1] = np.nan
    res = fitted.infer_labels(flux, ivar)
    assert res.converged.tolist() == [True, False, True]
    assert np.all(np.isnan(res.labels[1])) and np.isnan(res.chi2[1])
    assert np.all(np.isinf(res.uncertainties[1]))
    assert np.all(np.isfinite(res.labels[[0, 2]]))


def test_spectrum_with_fewer_pixels_than_labels_has_infinite_uncertainty(fitted, survey):
    flux, ivar = survey.spectra[N : N + 1].copy(), survey.ivar[N : N + 1].copy()
    ivar[0, 2:] = 0.0
    res = fitted.infer_labels(flux, ivar)
    assert not res.converged[0]
    assert np.all(np.isinf(res.uncertainties[0]))


def test_all_zero_ivar_is_refused(survey):
    labels, flux, ivar = _train(survey)
    with pytest.raises(ValueDomainError, match="output_ivar"):
        Cannon(3, P).fit(labels, flux, np.zeros_like(ivar))


def test_all_nan_flux_is_refused(survey):
    labels, flux, ivar = _train(survey)
    with pytest.raises(ValueDomainError, match="no pixel is seen"):
        Cannon(3, P).fit(labels, np.full_like(flux, np.nan), ivar)


def test_labels_read_as_strings_are_refused(survey):
    labels, flux, ivar = _train(survey)
    text = labels.astype(str)
    text[4, 1] = "nan"
    with pytest.raises(ValueDomainError, match="labels"):
        Cannon(3, P).fit(text, flux, ivar)
    with pytest.raises(ValueDomainError, match="output"):
        Cannon(3, P).fit(labels, flux.astype(str), ivar)


def test_negative_ivar_is_refused(survey):
    labels, flux, ivar = _train(survey)
    ivar[0, 0] = -1.0
    with pytest.raises(ValueDomainError, match="output_ivar"):
        Cannon(3, P).fit(labels, flux, ivar)


def test_negative_ivar_next_to_a_nan_in_its_pixel_is_refused(survey):
    """The device scan shares one sum between the count, the finiteness check and the
    negative check; a NaN hides a negative ivar there, so the host looks again."""
    labels, flux, ivar = _train(survey)
    ivar[0, 0] = -1.0
    flux[1, 0] = np.nan
    with pytest.raises(ValueDomainError, match="output_ivar"):
        Cannon(3, P).fit(labels, flux, ivar)


def test_pixel_whose_stars_share_labels_is_unusable(survey):
    labels, flux, ivar = _train(survey)
    labels = labels.copy()
    ivar[12:, 0] = 0.0
    labels[:12] = labels[0]  # the 12 stars that see pixel 0 share one set of labels
    with pytest.warns(UserWarning, match="1 of 16 pixels"):
        c = Cannon(3, P).fit(labels, flux, ivar)
    assert not bool(c.usable[0]) and np.all(np.asarray(c.usable)[1:])
    assert np.all(np.isfinite(np.asarray(c.coeffs)))


def test_non_finite_coefficients_are_refused(survey, monkeypatch):
    from orrery.lux._cannon import train as _cannon_train

    real = _cannon_train.fit_all

    def broken(*args, **kwargs):
        coeffs, *rest = real(*args, **kwargs)
        return (coeffs.at[2, 1].set(np.nan), *rest)

    monkeypatch.setattr(_cannon_train, "fit_all", broken)
    with pytest.raises(ValueDomainError, match="non-finite coefficients"):
        Cannon(3, P).fit(*_train(survey))


# ------------------------------------------------------------------ artifacts
def _drop_array(path, name):
    with np.load(path / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files if k != name}
    np.savez(path / "arrays.npz", **arrays)
    meta = json.loads((path / "metadata.json").read_text())
    meta["arrays"] = {k: v for k, v in meta["arrays"].items() if k != name}
    (path / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["scatter", "coeffs", "label_scale", "usable"])
def test_incomplete_artifact_is_refused(fitted, tmp_path, name):
    path = fitted.save(tmp_path / "c")
    _drop_array(path, name)
    with pytest.raises(ArtifactError, match=name):
        Cannon.load(path)


def test_missing_config_key_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "c")
    meta = json.loads((path / "metadata.json").read_text())
    del meta["config"]["output_size"]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="output_size"):
        Cannon.load(path)


def test_float64_cannon_keeps_its_dtype_or_warns(survey, tmp_path):
    jax.config.update("jax_enable_x64", True)
    try:
        c = Cannon(3, P).fit(*_train(survey))
        path = c.save(tmp_path / "c64")
        back = Cannon.load(path)
        assert back.coeffs.dtype == np.float64 and back.scatter.dtype == np.float64
        np.testing.assert_array_equal(np.asarray(back.coeffs), np.asarray(c.coeffs))
    finally:
        jax.config.update("jax_enable_x64", False)
    with pytest.warns(UserWarning, match="float64"):
        Cannon.load(path)


# issue 32: +inf inverse variances and settings that cannot mean anything are refused


def test_infinite_ivar_in_training_is_refused_not_masked(survey):
    labels, flux, ivar = _train(survey)
    ivar[3, 5] = np.inf
    with pytest.raises(
        ValueDomainError, match=r"output_ivar: 1 entries with a finite flux are \+inf"
    ):
        Cannon(3, P).fit(labels, flux, ivar)
    flux[3, 5] = np.nan  # a missing flux is masked whatever its ivar
    assert Cannon(3, P).fit(labels, flux, ivar).is_fitted


def test_infinite_ivar_in_the_test_step_is_refused(fitted, survey):
    flux, ivar = survey.spectra[N:].copy(), survey.ivar[N:].copy()
    ivar[0, 2] = np.inf
    with pytest.raises(
        ValueDomainError, match=r"output_ivar: 1 entries with a finite flux are \+inf"
    ):
        fitted.infer_labels(flux, ivar)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 0}, "max_iter"),
        ({"xtol": -1e-6}, "xtol"),
        ({"ftol": float("nan")}, "ftol"),
    ],
)
def test_infer_labels_refuses_meaningless_settings(fitted, survey, kwargs, name):
    with pytest.raises(ConfigError, match=name):
        fitted.infer_labels(survey.spectra[N:], survey.ivar[N:], **kwargs)
