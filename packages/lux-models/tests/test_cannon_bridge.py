"""The Cannon -> Lux bridge reproduces `Cannon.predict` for labels in physical units."""

import numpy as np
import pytest

from orrery.interface import NotFittedError
from orrery.lux import Cannon, Lux
from orrery.lux.datasets import synthetic_survey


def _bridge(cannon, labels):
    # as the reference shows: register the sequence, predict with the fitted coefficients
    lux = Lux(latent_size=cannon.label_size)
    lux.register_output("flux", cannon.to_transform_sequence())
    pars = cannon.get_coeffs_as_transform_pars()
    assert isinstance(pars["data"], list)
    return np.asarray(lux.predict_outputs(labels, {"flux": pars})["flux"])


@pytest.fixture(scope="module")
def survey():
    return synthetic_survey(80, 12, seed=0)


def test_bridge_reproduces_predict_for_raw_labels(survey):
    cannon = Cannon(3, 12).fit(survey.labels, survey.spectra, survey.ivar)
    want = np.asarray(cannon.predict(survey.labels))
    np.testing.assert_allclose(_bridge(cannon, survey.labels), want, rtol=0, atol=2e-5)


def test_bridge_is_exact_in_float64(survey, x64):
    cannon = Cannon(3, 12, poly_degree=3).fit(survey.labels, survey.spectra, survey.ivar)
    want = np.asarray(cannon.predict(survey.labels))
    assert want.dtype == np.float64
    np.testing.assert_allclose(_bridge(cannon, survey.labels), want, rtol=0, atol=1e-11)


def test_bridge_needs_a_fitted_model():
    with pytest.raises(NotFittedError):
        Cannon(3, 12).get_coeffs_as_transform_pars()
