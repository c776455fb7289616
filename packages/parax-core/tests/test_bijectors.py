"""Property tests for every bijector we ship or use: round trips and log-determinants."""

import distreqx.bijectors as dxb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.parax.bijectors import Exp, Interval, Inverse, Softplus


@pytest.fixture(scope="module", autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _bijectors():
    # (name, factory, input range): factories build inside the x64 context.
    return {
        "exp": (lambda: Exp(), (-5.0, 5.0)),
        "softplus": (lambda: Softplus(), (-8.0, 8.0)),
        "interval": (lambda: Interval(jnp.asarray(-2.0), jnp.asarray(3.0)), (-6.0, 6.0)),
        "inverse_interval": (
            lambda: Inverse(Interval(jnp.asarray(-2.0), jnp.asarray(3.0))),
            (-1.9, 2.9),
        ),
        "inverse_exp": (lambda: Inverse(Exp()), (0.01, 50.0)),
        "inverse_softplus": (lambda: Inverse(Softplus()), (0.01, 20.0)),
        # the composition Parameter.transformed builds
        "chain": (
            lambda: dxb.Chain([Exp(), Interval(jnp.asarray(0.0), jnp.asarray(1.0))]),
            (-4.0, 4.0),
        ),
        "sigmoid": (lambda: dxb.Sigmoid(), (-6.0, 6.0)),
        "tanh": (lambda: dxb.Tanh(), (-3.0, 3.0)),
        "affine": (lambda: dxb.ScalarAffine(jnp.asarray(1.5), jnp.asarray(-2.0)), (-10.0, 10.0)),
    }


_CHECKS = {}


def _check_fn(name):
    if name not in _CHECKS:
        bij = _bijectors()[name][0]()

        @jax.jit
        def check(x):
            y, fldj = bij.forward_and_log_det(x)
            x2, ildj = bij.inverse_and_log_det(y)
            auto = jnp.log(jnp.abs(jax.jacfwd(bij.forward)(x)))
            return x2, fldj, ildj, auto, bij.forward_log_det_jacobian(x)

        _CHECKS[name] = check
    return _CHECKS[name]


@pytest.mark.parametrize("name", list(_bijectors()))
@settings(max_examples=25, deadline=None)
@given(u=st.floats(0.0, 1.0))
def test_round_trip_and_log_det(name, u):
    lo, hi = _bijectors()[name][1]
    x = jnp.asarray(lo + (hi - lo) * u, dtype=jnp.float64)
    x2, fldj, ildj, auto, fldj2 = _check_fn(name)(x)
    np.testing.assert_allclose(x2, x, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(fldj, auto, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(ildj, -fldj, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(fldj2, fldj, rtol=1e-7, atol=1e-7)


def test_vector_inputs_and_same_as():
    b = Interval(jnp.asarray([0.0, 1.0]), jnp.asarray([1.0, 5.0]))
    y = b.forward(jnp.zeros(2))
    np.testing.assert_allclose(y, [0.5, 3.0])
    assert Exp().same_as(Exp()) and not Exp().same_as(Softplus())
    assert Inverse(Exp()).same_as(Inverse(Exp()))
    assert Inverse(Exp()).is_constant_jacobian is False
    with pytest.raises(TypeError):
        Inverse(np.exp)
