"""Joint distribution, sample shapes and the parameter factories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import Normal, Uniform

from orrery.interface import ValueDomainError
from orrery.parax import parameters as pp
from orrery.parax.distributions import Joint, sample


def _joint():
    return Joint(
        {
            "a": Normal(jnp.asarray(1.0), jnp.asarray(2.0)),
            "b": Uniform(jnp.asarray([0.0, 1.0]), jnp.asarray([1.0, 3.0])),
        }
    )


def test_joint_log_prob_is_sum_of_components():
    j = _joint()
    value = {"a": jnp.asarray(0.5), "b": jnp.asarray([0.2, 2.0])}
    expected = -0.5 * (0.25 / 4) - np.log(2.0 * np.sqrt(2 * np.pi)) + np.log(1.0) - np.log(2.0)
    np.testing.assert_allclose(j.log_prob(value), expected, rtol=1e-5)
    np.testing.assert_allclose(j.prob(value), np.exp(expected), rtol=1e-5)
    _, lp = j.sample_and_log_prob(jax.random.key(0))
    assert lp.shape == ()


def test_joint_moments_and_samples():
    j = _joint()
    draws = j.sample_n(jax.random.key(1), 4000)
    assert draws["a"].shape == (4000,) and draws["b"].shape == (4000, 2)
    np.testing.assert_allclose(draws["a"].mean(), 1.0, atol=0.1)
    np.testing.assert_allclose(draws["b"].mean(0), [0.5, 2.0], atol=0.05)
    np.testing.assert_allclose(j.mean()["b"], [0.5, 2.0])
    np.testing.assert_allclose(j.stddev()["a"], 2.0)
    np.testing.assert_allclose(j.variance()["a"], 4.0)
    assert set(j.event_shape) == {"a", "b"}
    np.testing.assert_allclose(
        j.cdf({"a": jnp.asarray(1.0), "b": jnp.asarray([0.5, 2.0])})["a"], 0.5
    )
    np.testing.assert_allclose(j.kl_divergence(j), 0.0, atol=1e-6)
    ent = 0.5 * np.log(2 * np.pi * np.e * 4.0) + np.log(1.0) + np.log(2.0)
    np.testing.assert_allclose(j.entropy(), ent, rtol=1e-5)
    with pytest.raises(TypeError):
        Joint({"a": 1.0})


def test_sample_with_shape():
    d = Normal(jnp.asarray(0.0), jnp.asarray(1.0))
    assert sample(d, jax.random.key(0), (3, 5)).shape == (3, 5)
    assert sample(d, jax.random.key(0), 7).shape == (7,)
    assert sample(d, jax.random.key(0)).shape == ()
    assert sample(_joint(), jax.random.key(0), (2, 3))["b"].shape == (2, 3, 2)


def test_factories():
    u = pp.Uniform(0.0, 4.0)
    assert float(u.value) == 2.0 and isinstance(u.distribution, Uniform)
    np.testing.assert_allclose(u.bounds, [0.0, 4.0])
    assert float(pp.Uniform(0.0, 4.0, value=1.0).value) == 1.0
    n = pp.Normal([1.0, 2.0], 0.5)
    assert n.shape == (2,)
    np.testing.assert_allclose(n.distribution.scale, [0.5, 0.5])
    c = pp.CenteredUniform(10.0, 2.0)
    np.testing.assert_allclose([c.distribution.low, c.distribution.high], [8.0, 12.0])
    r = pp.RelativeUniform(-10.0, 0.1)
    np.testing.assert_allclose([r.distribution.low, r.distribution.high], [-11.0, -9.0])
    assert float(r.value) == -10.0
    rn = pp.RelativeNormal(-4.0, 0.25, name="q")
    assert float(rn.distribution.scale) == 1.0 and rn.name == "q"
    assert pp.Fixed(3.0).fixed and not pp.Free(3.0).fixed
    assert pp.Free(1.0, n=4).shape == (4,)
    with pytest.raises(ValueDomainError):
        pp.Uniform(1.0, 0.0)
    with pytest.raises(ValueDomainError):
        pp.Normal(0.0, -1.0)
