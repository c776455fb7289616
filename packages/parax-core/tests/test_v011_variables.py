"""orrery.parax.v011 variables, with gradients checked against jax.grad."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax.v011 as parax
from orrery.interface import ConfigError, ConfigTypeError
from orrery.parax.v011 import constraints as C
from orrery.parax.v011 import distributions as D


def test_fixed_stops_gradients_as_parax_011():
    assert jax.grad(lambda x: parax.Fixed(x).value ** 2)(3.0) == 0.0
    assert jax.grad(lambda x: parax.Fixed(x) * x)(3.0) == 3.0
    assert jax.grad(lambda x: jnp.sum(parax.unwrap(parax.Fixed(x)) * x))(3.0) == 3.0
    assert jax.grad(lambda x: parax.Real(x).value ** 2)(3.0) == 6.0


def test_fixed_is_a_constant_and_frees_back():
    inner = parax.Constrained(C.Positive(), value=2.0)
    fixed = parax.Fixed(parax.Fixed(inner))
    assert fixed.raw_value is inner  # Fixed(Fixed(x)) is Fixed(x)
    assert parax.is_constant(fixed) and parax.as_free(fixed) is inner
    assert float(fixed.value) == pytest.approx(2.0)
    assert parax.as_fixed(fixed) is fixed


def test_constrained_value_and_raw_value():
    c = parax.Constrained(C.Positive(), value=5.0)
    assert float(c.value) == pytest.approx(5.0, rel=1e-5)
    np.testing.assert_allclose(c.raw_value, np.log(np.expm1(5.0)), rtol=1e-5)
    r = parax.Constrained(C.Positive(), raw_value=0.0)
    assert float(r.value) == pytest.approx(np.log(2.0))
    lo, hi = parax.Constrained(C.Interval(0.0, 1.0), value=jnp.full(3, 0.5)).bounds
    assert lo.shape == hi.shape == (3,)
    with pytest.raises(ConfigError, match="Must provide either"):
        parax.Constrained(C.Positive())
    with pytest.raises(ConfigError, match="Cannot provide both"):
        parax.Constrained(C.Positive(), value=1.0, raw_value=0.0)
    with pytest.raises(Exception, match="Constraint violated"):
        parax.Constrained(C.Interval(0.0, 1.0), value=2.0)


def test_constrained_gradient_matches_the_chain_rule():
    # d/draw softplus(raw)^2 = 2 softplus(raw) sigmoid(raw)
    g = jax.grad(lambda raw: parax.Constrained(C.Positive(), raw_value=raw).value ** 2)(0.3)
    expected = 2 * np.log1p(np.exp(0.3)) / (1 + np.exp(-0.3))
    assert float(g) == pytest.approx(expected, rel=1e-5)


def test_random_defaults_to_the_mean_and_infers_its_constraint():
    r = parax.Random(D.Uniform(jnp.array(0.0), jnp.array(4.0)))
    assert float(r.value) == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(r.bounds, [0.0, 4.0])
    assert parax.is_probabilistic(r) and parax.is_constrained(r)
    with pytest.raises(ConfigError, match="Cannot provide both"):
        parax.Random(D.Normal(0.0, 1.0), value=0.0, raw_value=0.0)


def test_random_constrain_truncates_a_normal():
    r = parax.Random(D.Normal(jnp.array(0.0), jnp.array(1.0)), value=0.5)
    narrowed = r.constrain(C.Interval(0.0, 2.0))
    assert isinstance(parax.as_unwrapped(narrowed.distribution), D.TruncatedNormal)
    assert float(narrowed.value) == pytest.approx(0.5, rel=1e-5)
    g = parax.Random(D.Gamma(jnp.array(2.0), jnp.array(1.0)), value=1.0)
    with pytest.warns(UserWarning, match="cannot be truncated"):
        g.constrain(C.Interval(0.5, 2.0))


def test_tagged_derived_transformed_bounded():
    t = parax.Tagged(jnp.array([1.0, 2.0]), metadata={"unit": "m"})
    assert t.metadata["unit"] == "m" and parax.is_annotated(t)
    np.testing.assert_allclose(t * 2, [2.0, 4.0])
    d = parax.Derived(jax.nn.softmax, jnp.zeros(4))
    np.testing.assert_allclose(d.value, np.full(4, 0.25))
    assert jax.grad(lambda x: parax.Derived(jnp.exp, x).value)(0.0) == pytest.approx(1.0)
    tr = parax.Transformed(parax.bijectors.Exp(), parax.Transformed(parax.bijectors.Exp(), 0.0))
    assert float(tr.value) == pytest.approx(np.e)  # exp(exp(0)), merged into one Chain
    assert float(tr.wrap(jnp.array(np.e)).raw_value) == pytest.approx(0.0, abs=1e-6)
    b = parax.Bounded((0.0, 1.0), 0.5)
    assert parax.is_bounded(b) and float(b.value) == 0.5


def test_variables_behave_as_arrays():
    v = parax.Real(jnp.array([1.0, 2.0, 3.0]))
    assert v.shape == (3,) and v.ndim == 1 and len(v) == 3
    np.testing.assert_allclose(1 + v, [2.0, 3.0, 4.0])
    np.testing.assert_allclose(jnp.sum(v), 6.0)  # __jax_array__
    assert float(v[1]) == 2.0 and float(-v[0]) == -1.0


def test_is_param_as_param_and_filters():
    assert parax.is_param(jnp.array(1.0)) and parax.is_param(parax.Real(1.0))
    assert not parax.is_param(1.0) and not parax.is_param(jnp.array(1))
    arr = parax.as_param([1.0, 2.0])
    assert isinstance(arr, jax.Array) and arr.shape == (2,)
    assert parax.is_variable(parax.as_variable(1.0))

    class M(eqx.Module):
        a: parax.Constrained
        b: parax.Fixed
        c: jax.Array

    m = M(parax.Constrained(C.Positive(), value=1.0), parax.Fixed(2.0), jnp.array(3.0))
    params = parax.variables.tree_named_params(m)
    assert list(params) == [".a", ".b", ".c"]
    trainable, _ = eqx.partition(m, C.is_dynamic, is_leaf=C.is_leaf)
    assert trainable.b is None and trainable.a is not None and trainable.c is not None


def test_constrain_param_routes_through_wrappers():
    out = parax.variables.constrain_param(jnp.array(2.0), C.Positive(), C.LessThan(5.0))
    assert isinstance(out, parax.Constrained)
    np.testing.assert_allclose(out.bounds, [0.0, 5.0])
    fixed = parax.variables.constrain_param(parax.Fixed(jnp.array(1.0)), C.Positive())
    assert isinstance(fixed, parax.Fixed) and isinstance(fixed.raw_value, parax.Constrained)
    with pytest.raises(ConfigTypeError):
        parax.variables.constrain_param("x", C.Positive())
