"""Shared fixtures for the sbi-flows tests."""

import numpy as np
import pytest

from orrery.sbi import SimulationDataset


@pytest.fixture(scope="session")
def unit_box_data():
    """``make(n)``: a 2-D problem with a uniform prior on the unit box, x = theta + 0.1 noise."""

    def make(n: int) -> SimulationDataset:
        rng = np.random.default_rng(0)
        theta = rng.uniform(size=(n, 2))
        x = theta + 0.1 * rng.normal(size=theta.shape)
        return SimulationDataset.from_arrays(theta, x, bounds=[[0, 1], [0, 1]], seed=0)

    return make


@pytest.fixture(scope="session")
def check_bijection():
    """``check(bijection, x, cond, atol, closure_atol, inverse_atol)``: at one point, the
    log-det equals the autodiff Jacobian's, the inverse closes, and its log-det is minus
    the forward one (tolerances in that order)."""
    import jax
    import jax.numpy as jnp

    def check(bijection, x, cond, atol, closure_atol, inverse_atol):
        y, log_det = bijection.transform_and_log_det(x, cond)
        jac = jax.jacfwd(lambda v: bijection.transform(v, cond))(x)
        assert float(log_det) == pytest.approx(float(jnp.linalg.slogdet(jac)[1]), abs=atol)
        back, inv_log_det = bijection.inverse_and_log_det(y, cond)
        np.testing.assert_allclose(back, x, atol=closure_atol)
        assert float(inv_log_det) == pytest.approx(-float(log_det), abs=inverse_atol)

    return check
