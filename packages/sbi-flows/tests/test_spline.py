"""SplineCoupling: the same function and state layout as flowjax's spline Coupling."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from flowjax.bijections import Coupling, RationalQuadraticSpline

from orrery.sbi._flows.spline import SplineCoupling, spline_knots

DIM, KEPT, COND, KNOTS, BOUND = 5, 2, 3, 6, 3.0


def _pair():
    common = dict(untransformed_dim=KEPT, dim=DIM, cond_dim=COND, nn_width=16, nn_depth=2)
    ours = SplineCoupling(jr.key(0), knots=KNOTS, interval=BOUND, **common)
    theirs = Coupling(
        jr.key(0), transformer=RationalQuadraticSpline(knots=KNOTS, interval=BOUND), **common
    )
    # Larger conditioner outputs: uneven bins and derivatives far from 1.
    return tuple(_arrays(lambda a: 3.0 * a, m) for m in (ours, theirs))


def _arrays(f, module):
    return jax.tree.map(lambda a: f(a) if eqx.is_inexact_array(a) else a, module)


def _float64(module):
    return _arrays(lambda a: jnp.asarray(a, jnp.float64), module)


def test_same_key_gives_the_same_conditioner_as_flowjax():
    ours, theirs = _pair()
    for a, b in zip(
        jax.tree.leaves(ours.conditioner), jax.tree.leaves(theirs.conditioner), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_transform_inverse_and_log_det_equal_flowjax_in_float64():
    jax.config.update("jax_enable_x64", True)
    try:
        ours, theirs = (_float64(m) for m in _pair())
        # points inside the interval, on its edges and outside it (identity there)
        x = jr.normal(jr.key(1), (64, DIM), jnp.float64) * 2.5
        x = x.at[0, KEPT:].set(BOUND).at[1, KEPT:].set(-BOUND).at[2, KEPT:].set(7.0)
        cond = jr.normal(jr.key(2), (64, COND), jnp.float64)
        for method in ("transform_and_log_det", "inverse_and_log_det"):
            y1, l1 = jax.vmap(getattr(ours, method))(x, cond)
            y2, l2 = jax.vmap(getattr(theirs, method))(x, cond)
            np.testing.assert_allclose(y1, y2, rtol=0, atol=1e-12)
            np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-11)
        np.testing.assert_array_equal(x[2, KEPT:], ours.transform(x[2], cond[2])[KEPT:])
    finally:
        jax.config.update("jax_enable_x64", False)


def test_log_det_is_the_log_jacobian_and_inverse_closes(check_bijection):
    jax.config.update("jax_enable_x64", True)
    try:
        ours, _ = _pair()
        ours = _float64(ours)
        x = jnp.array([0.3, -1.2, 0.9, -2.5, 1.7])
        c = jnp.array([0.1, -0.4, 2.0])
        check_bijection(ours, x, c, 1e-10, 1e-10, 1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_zero_parameters_are_the_identity_with_the_configured_bins():
    x_pos, y_pos, derivs = spline_knots(jnp.zeros((2, 3 * (KNOTS + 1) + 1)), BOUND)
    assert x_pos.shape == (2, KNOTS + 2)
    np.testing.assert_allclose(x_pos, y_pos)
    np.testing.assert_allclose(x_pos[0], np.linspace(-BOUND, BOUND, KNOTS + 2), atol=1e-6)
    np.testing.assert_allclose(derivs, 1.0, atol=1e-6)
