"""orrery.parax.v011 distributions and bijectors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats as jst

from orrery.parax.v011 import bijectors as B
from orrery.parax.v011 import distributions as D


def _phi(z):
    return np.vectorize(lambda t: 0.5 * (1.0 + math.erf(t / math.sqrt(2.0))))(z)


def test_truncated_normal_matches_numerical_integration():
    loc, scale, low, high = 0.3, 1.2, -0.5, 2.0
    d = D.TruncatedNormal(loc, scale, low, high)
    mass = _phi((high - loc) / scale) - _phi((low - loc) / scale)
    grid = np.linspace(low, high, 20001)
    pdf = np.exp(-0.5 * ((grid - loc) / scale) ** 2) / (math.sqrt(2 * math.pi) * scale * mass)
    x = np.array([-0.4, 0.0, 1.5])
    np.testing.assert_allclose(
        d.log_prob(jnp.asarray(x)), np.interp(x, grid, np.log(pdf)), rtol=1e-4
    )
    cdf = (_phi((x - loc) / scale) - _phi((low - loc) / scale)) / mass
    np.testing.assert_allclose(d.cdf(jnp.asarray(x)), cdf, rtol=1e-4)
    mean = np.trapezoid(grid * pdf, grid)
    var = np.trapezoid((grid - mean) ** 2 * pdf, grid)
    assert float(d.mean()) == pytest.approx(mean, rel=1e-4)
    assert float(d.variance()) == pytest.approx(var, rel=1e-3)
    assert float(d.entropy()) == pytest.approx(-np.trapezoid(pdf * np.log(pdf), grid), rel=1e-3)
    assert float(d.cdf(d.icdf(jnp.array(0.3)))) == pytest.approx(0.3, rel=1e-4)
    assert float(d.log_prob(jnp.array(3.0))) == -np.inf
    assert (float(d.icdf(0.0)), float(d.icdf(1.0))) == (-0.5, 2.0)


def test_truncated_normal_with_infinite_bounds_has_finite_gradients():
    for low, high in [(1.0, jnp.inf), (-jnp.inf, jnp.inf)]:
        g = jax.grad(lambda loc, lo=low, hi=high: D.TruncatedNormal(loc, 0.5, lo, hi).mean())(2.0)
        assert np.isfinite(g)
    free = D.TruncatedNormal(2.0, 0.5, -jnp.inf, jnp.inf)
    assert float(free.variance()) == pytest.approx(0.25, rel=1e-5)
    samples = jax.vmap(D.TruncatedNormal(0.0, 1.0, 0.0, 1.0).sample)(
        jax.random.split(jax.random.key(0), 200)
    )
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_independent_reinterprets_batch_dimensions():
    u = D.Independent(D.Uniform(jnp.zeros(2), jnp.full(2, 2.0)), 1)
    assert u.event_shape == (2,)
    assert float(u.log_prob(jnp.array([0.5, 1.5]))) == pytest.approx(-2 * np.log(2.0))
    assert u.sample(jax.random.key(1)).shape == (2,)
    n = D.Independent(D.Normal(jnp.zeros(3), jnp.ones(3)))
    assert float(n.log_prob(jnp.zeros(3))) == pytest.approx(-1.5 * np.log(2 * np.pi), rel=1e-6)


def test_joint_and_lognormal():
    j = D.Joint({"a": D.Normal(jnp.array(0.0), jnp.array(1.0)), "b": (D.LogNormal(0.0, 1.0),)})
    s = j.sample(jax.random.key(0))
    assert set(s) == {"a", "b"} and float(s["b"][0]) > 0
    lp = j.log_prob({"a": jnp.array(0.0), "b": (jnp.array(1.0),)})
    assert float(lp) == pytest.approx(2 * float(jst.norm.logpdf(0.0)), rel=1e-5)  # log 1 = 0
    ln = D.LogNormal(0.2, 0.5)
    assert float(ln.mean()) == pytest.approx(np.exp(0.2 + 0.5**2 / 2), rel=1e-5)
    assert float(ln.log_prob(2.0)) == pytest.approx(
        float(jst.norm.logpdf(np.log(2.0), 0.2, 0.5)) - np.log(2.0), rel=1e-5
    )
    assert float(ln.icdf(0.5)) == pytest.approx(np.exp(0.2), rel=1e-5)


def test_normal_cdf_and_quantile_bijectors():
    ncdf = B.NormalCDF()
    np.testing.assert_allclose(ncdf.forward(jnp.array(0.0)), 0.5)
    y, ld = ncdf.forward_and_log_det(jnp.array(1.0))
    assert float(ld) == pytest.approx(float(jst.norm.logpdf(1.0)), rel=1e-6)
    assert float(ncdf.inverse(y)) == pytest.approx(1.0, rel=1e-5)
    q = B.Quantile(D.Uniform(jnp.array(2.0), jnp.array(6.0)))
    assert float(q.forward(jnp.array(0.25))) == pytest.approx(3.0)
    assert float(q.inverse(jnp.array(5.0))) == pytest.approx(0.75)
    whiten = B.Chain([q, ncdf])  # the copula map a Uniform prior gets
    assert float(whiten.forward(jnp.array(0.0))) == pytest.approx(4.0)
    assert np.isfinite(float(whiten.forward(jnp.array(40.0))))  # clipped, never past the edge


def test_chain_shift_sigmoid_leafwise_identity():
    chain = B.Chain([B.Shift(jnp.array(1.0)), B.Exp()])  # last applied first
    assert float(chain.forward(jnp.array(0.0))) == pytest.approx(2.0)
    sig = B.Sigmoid()
    g = jax.grad(lambda x: sig.forward_and_log_det(x)[1])(200.0)
    assert np.isfinite(g)
    lw = B.Leafwise({"a": B.Exp(), "b": B.Identity()})
    y, ld = lw.forward_and_log_det({"a": jnp.array([0.0, 1.0]), "b": jnp.array(3.0)})
    np.testing.assert_allclose(y["a"], [1.0, np.e], rtol=1e-6)
    assert float(ld) == pytest.approx(1.0)  # sum of log|d exp| = sum(x)
    assert lw.same_as(B.Leafwise({"a": B.Exp(), "b": B.Identity()}))
