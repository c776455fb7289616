"""A second Cannon fit (and test step) on the same shapes compiles nothing."""

import logging

import jax
import numpy as np

from orrery.lux import Cannon
from orrery.lux.datasets import synthetic_survey


def _compiles(caplog, fn):
    caplog.clear()
    with caplog.at_level(logging.DEBUG), jax.log_compiles(True):
        fn()
    return [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]


def test_second_fit_and_test_step_compile_nothing(caplog):
    s = synthetic_survey(90, 24, seed=1)
    other = synthetic_survey(90, 24, seed=2)  # same shapes, other numbers
    cannon = Cannon(3, 24).fit(s.labels, s.spectra, s.ivar)
    cannon.infer_labels(s.spectra[:5], s.ivar[:5])

    def again():
        fitted = Cannon(3, 24).fit(other.labels, other.spectra, other.ivar)
        res = fitted.infer_labels(other.spectra[:5], other.ivar[:5])
        assert np.all(res.converged)

    assert _compiles(caplog, again) == []
    # the probe does see a compilation when there is one
    assert _compiles(caplog, lambda: jax.jit(lambda x: x * 3 + 1)(np.ones(7)))


def test_first_fit_compiles_only_the_training_program(caplog):
    # a shape no other test fits: everything the fit needs is compiled here, and the
    # features, the checks and the fitted arrays are formed on the host (each small
    # device program would cost a first fit its own compilation)
    s = synthetic_survey(53, 19, seed=3)
    caplog.clear()
    with caplog.at_level(logging.DEBUG), jax.log_compiles(True):
        Cannon(3, 19).fit(s.labels, s.spectra, s.ivar)
    done = [r.getMessage() for r in caplog.records if "Finished XLA compilation" in r.getMessage()]
    assert len(done) == 1 and "fit_all)" in done[0], done
