"""Sampling, func_* tools, covariance, summary and draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import MultivariateNormalFullCovariance

from orrery.interface import ConfigError, Draws, ShapeError
from orrery.parax import Module, Parameter, ParameterGroup, covariance, draws_from
from orrery.parax import parameters as pp
from orrery.parax.bijectors import Exp, Interval


class Line(Module):
    slope: Parameter
    offset: Parameter

    def __call__(self, x):
        return self.slope * x + self.offset


def predict(m, x):
    return m(x)


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _data():
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, 20)
    sigma = 0.1
    y = 2.0 * x + 1.0 + sigma * rng.normal(size=x.size)
    return x, y, sigma


def test_covariance_recovers_analytic_line_errors(x64):
    x, y, sigma = _data()
    design = np.stack([x, np.ones_like(x)], axis=1)
    best = np.linalg.lstsq(design, y, rcond=None)[0]
    expected = sigma**2 * np.linalg.inv(design.T @ design)

    def nll(m, args):
        xx, yy = args
        return 0.5 * jnp.sum(((yy - m(xx)) / sigma) ** 2)

    line = Line(best[0], best[1])
    cov = covariance(line, nll, (x, y))
    np.testing.assert_allclose(cov, expected, rtol=1e-8)
    # a transform changes the latent Hessian, not the physical covariance at the optimum
    constrained = Line(Parameter(best[0], transform=Exp()), Parameter(best[1], transform=Exp()))
    np.testing.assert_allclose(covariance(constrained, nll, (x, y)), expected, rtol=1e-6)
    table = line.summary(cov)
    assert "slope" in table and f"{np.sqrt(expected[0, 0]):.6g}" in table
    assert "stderr" in Line(1.0, 2.0).summary()
    with pytest.raises(ShapeError):
        line.summary(np.eye(3))


def test_func_jacobian_and_sensitivity():
    line = Line(2.0, 1.0)
    x = jnp.array([0.0, 1.0, 2.0])
    jac = line.func_jacobian(predict, x)
    np.testing.assert_allclose(jac["slope"], x)
    np.testing.assert_allclose(jac["offset"], 1.0)
    y = 2.0 * x + 1.0
    rel = line.func_sensitivity(predict, x)
    np.testing.assert_allclose(rel["slope"], x * 2.0 / y, rtol=1e-6)
    semi = line.func_sensitivity(predict, x, kind="semi-relative")
    np.testing.assert_allclose(semi["offset"], [1.0, 1.0, 1.0])
    absolute = line.func_sensitivity(predict, x, kind="absolute", norm=2)
    np.testing.assert_allclose(absolute, np.sqrt(x**2 + 1.0), rtol=1e-6)
    with pytest.raises(ConfigError):
        line.func_sensitivity(predict, x, kind="relativ")
    # derivatives are physical even through a transform
    log_line = Line(Parameter(2.0, transform=Exp()), 1.0)
    np.testing.assert_allclose(log_line.func_jacobian(predict, x)["slope"], x, rtol=1e-6)


class Model(Module):
    a: Parameter
    b: Parameter
    c: Parameter
    d: Parameter
    e: Parameter


def _model():
    return Model(
        a=pp.Normal(1.0, 0.5),
        b=pp.Uniform(0.0, 2.0, transform=Interval(0.0, 2.0)),
        c=pp.Normal([0.0, 0.0], 1.0),
        d=pp.Fixed(5.0, distribution=pp.Normal(0.0, 1.0).distribution),
        e=Parameter(7.0),
    )


def test_sampled_and_func_samples_respect_distributions():
    m = _model()
    cov = jnp.array([[1.0, 0.9], [0.9, 1.0]])
    m = m.with_param_groups(
        ParameterGroup(
            ["c_0", "c_1"], distribution=MultivariateNormalFullCovariance(jnp.zeros(2), cov)
        )
    )
    one = m.sampled(jax.random.key(0))
    assert float(one.param_value("d")) == 5.0 and float(one.param_value("e")) == 7.0

    def values(mod, _):
        return mod.flat_param_values(include_fixed=True)

    out = m.func_samples(values, None, key=jax.random.key(1), num_samples=2000)
    assert out.shape == (2000, 6)
    np.testing.assert_allclose(out[:, 0].mean(), 1.0, atol=0.05)
    np.testing.assert_allclose(out[:, 0].std(), 0.5, atol=0.05)
    assert out[:, 1].min() >= 0.0 and out[:, 1].max() <= 2.0
    np.testing.assert_allclose(out[:, 1].mean(), 1.0, atol=0.05)
    np.testing.assert_allclose(np.corrcoef(out[:, 2], out[:, 3])[0, 1], 0.9, atol=0.03)
    np.testing.assert_allclose(out[:, 4:], np.broadcast_to([5.0, 7.0], (2000, 2)))
    with pytest.raises(ConfigError):
        m.func_samples(values, None, key=jax.random.key(1), num_samples=0)


def test_to_draws_and_batched_draws():
    m = _model()
    draws = m.to_draws(jax.random.key(2), num_samples=2000)
    assert isinstance(draws, Draws)
    assert draws.names == ["a", "b", "c_0", "c_1", "e"] and draws.n_draws == 2000
    np.testing.assert_allclose(draws.mean()["a"], 1.0, atol=0.1)
    stacked = jax.vmap(lambda k: m.sampled(k))(jax.random.split(jax.random.key(3), 50))
    batched = draws_from(stacked, batched=True)
    assert batched.n_draws == 50 and batched.names == draws.names
    with pytest.raises(ConfigError):
        draws_from(m)


def test_covariance_is_the_same_whatever_bijector_and_equals_ols():
    # The README's data: y = 2x + 1 on 20 points, Gaussian nll with sigma = 1, at the optimum.
    x = jnp.linspace(0.0, 1.0, 20)
    y = 2.0 * x + 1.0

    def nll(m, args):
        return 0.5 * jnp.sum((args[1] - m(args[0])) ** 2)

    design = np.stack([np.asarray(x), np.ones(20)], axis=1)
    ols = np.sqrt(np.linalg.inv(design.T @ design)[0, 0])
    assert ols == pytest.approx(0.7368, abs=1e-4)  # 1 / sqrt(sum((x - mean x)^2))
    plain = covariance(Line(2.0, 1.0), nll, (x, y), at_optimum=True)
    exp = covariance(Line(Parameter(2.0, transform=Exp()), 1.0), nll, (x, y), at_optimum=True)
    interval = Line(Parameter(2.0, transform=Interval(0.0, 5.0)), 1.0)
    bounded = covariance(interval, nll, (x, y), at_optimum=True)
    for cov in (plain, exp, bounded):
        assert float(jnp.sqrt(cov[0, 0])) == pytest.approx(ols, rel=1e-4)
