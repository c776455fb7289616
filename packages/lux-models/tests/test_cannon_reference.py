"""The fitted coefficients and scatter stay what they were before the fast scatter fit.

``data/cannon_reference_x64.npz`` holds the coefficients and scatter that the
Cannon produced (in float64) before the training loop was rewritten for speed,
on the small fixed problem built below; the rewrite must reproduce them to
1e-6 relative.
"""

from pathlib import Path

import numpy as np

from orrery.lux import Cannon
from orrery.lux.datasets import synthetic_survey

REF = Path(__file__).parent / "data" / "cannon_reference_x64.npz"


def _problem():
    s = synthetic_survey(120, 40, snr=100, intrinsic_scatter=0.01, bad_pixel_fraction=0.02, seed=11)
    return s.labels, s.spectra, s.ivar


def _close(got, want, rtol):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3 * np.abs(want).max()))
    assert err < rtol, err


def test_x64_fit_equals_the_reference(x64):
    ref = np.load(REF)
    fitted = Cannon(3, 40).fit(*_problem())
    _close(fitted.scaled_coeffs, ref["coeffs"], 1e-6)
    _close(fitted.scatter, ref["scatter"], 1e-6)


def test_float32_fit_agrees_with_the_reference_to_float32_round_off():
    ref = np.load(REF)
    fitted = Cannon(3, 40).fit(*_problem())
    _close(fitted.scaled_coeffs, ref["coeffs"], 5e-3)
    _close(fitted.scatter, ref["scatter"], 5e-3)
