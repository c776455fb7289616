"""Parameter spaces: exact round trips and log-Jacobians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orrery.interface import ConfigError, ValueDomainError
from orrery.sbi import ParameterSpace
from orrery.sbi.spaces import cube_to_unconstrained, unconstrained_to_cube


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


LOWER, UPPER = np.array([-2.0, 0.0, 10.0]), np.array([3.0, 1e-3, 20.0])


@pytest.mark.parametrize("kind", ["physical", "cube", "unconstrained"])
def test_round_trip_is_exact(kind, x64):
    space = ParameterSpace(kind, LOWER, UPPER)
    theta = np.random.default_rng(0).uniform(LOWER, UPPER, size=(20, 3))
    back = np.asarray(space.to_physical(space.from_physical(theta)))
    np.testing.assert_allclose(back, theta, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["cube", "unconstrained"])
def test_log_jacobian_matches_autodiff(kind, x64):
    space = ParameterSpace(kind, LOWER, UPPER)
    theta = jnp.asarray(np.random.default_rng(1).uniform(LOWER, UPPER, size=(5, 3)))
    jac = jax.vmap(jax.jacfwd(space.from_physical))(theta)
    expected = np.linalg.slogdet(np.asarray(jac))[1]
    np.testing.assert_allclose(space.log_abs_det_jacobian(theta), expected, rtol=1e-10)


def test_cube_logit_maps_are_inverse_with_cancelling_log_dets(x64):
    u = jnp.linspace(0.01, 0.99, 7)[:, None]
    v, ld = cube_to_unconstrained(u)
    u2, ld2 = unconstrained_to_cube(v)
    np.testing.assert_allclose(u2, u, rtol=1e-12)
    np.testing.assert_allclose(ld + ld2, 0, atol=1e-12)


def test_density_conversion_integrates_to_one(x64):
    # A standard normal in unconstrained coordinates, converted to physical units.
    space = ParameterSpace("unconstrained", [1.0], [4.0])
    theta = jnp.linspace(1.0 + 1e-9, 4.0 - 1e-9, 20001)[:, None]
    v = space.from_physical(theta)
    log_p_v = jax.scipy.stats.norm.logpdf(v[:, 0])
    density = np.exp(np.asarray(space.log_prob_to_physical(log_p_v, v)))
    assert np.trapezoid(density, np.asarray(theta[:, 0])) == pytest.approx(1.0, abs=1e-6)


def test_configuration_errors():
    with pytest.raises(ConfigError, match="bounds"):
        ParameterSpace("cube")
    with pytest.raises(ValueDomainError, match="upper > lower"):
        ParameterSpace("cube", [0.0], [0.0])
    with pytest.raises(ConfigError, match="unconstrained"):
        ParameterSpace("unconstraind", [0.0], [1.0])
    space = ParameterSpace("cube", [0.0, 0.0], [1.0, 2.0])
    assert ParameterSpace.from_config(space.to_config()).upper.tolist() == [1.0, 2.0]
    assert space.contains(np.array([[0.5, 0.5], [1.5, 0.5]])).tolist() == [True, False]
