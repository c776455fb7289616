"""Pipeline 3: a parax Module gives an SBI posterior its prior, simulator, bounds and names."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def result(example):
    ex = example("parameters_to_posterior")
    return ex.run(ex.Config(n_simulations=4000, num_epochs=15, n_posterior_samples=1000))


def test_names_flow_from_module_to_posterior_to_draws(result):
    assert result["names"] == ["amplitude", "rate", "offset"]
    assert result["posterior_names"] == result["names"]
    assert result["draws"].names == result["names"]


def test_posterior_draws_respect_the_module_bounds(result):
    draws = result["draws"]
    for name, (lo, hi) in zip(result["names"], result["bounds"], strict=True):
        assert np.all(draws[name] >= lo) and np.all(draws[name] <= hi)


def test_module_accepts_the_posterior_mean(result):
    np.testing.assert_allclose(result["fitted_values"], result["posterior_mean"], rtol=1e-6)
    assert result["residual_rms"] < 0.05  # the curve at the posterior mean, vs the true curve


def test_posterior_recovers_held_out_parameters(result):
    z = result["z_scores"]  # (n_observations, 3)
    assert np.mean(z < 2.0) > 0.85
    assert np.all(z < 4.0)
