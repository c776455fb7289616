"""orrery.parax.v011.constraints: bounds, closedness, bijectors, intersection, inference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax.v011 as parax
from orrery.interface import ConfigError, ValueDomainError
from orrery.parax.v011 import constraints as C
from orrery.parax.v011 import distributions as D


@pytest.mark.parametrize(
    "constraint, inside, outside",
    [
        (C.Positive(), [1e-3, 5.0], [0.0, -1.0]),
        (C.NonNegative(), [0.0, 5.0], [-1e-3]),
        (C.Negative(), [-2.0], [0.0, 1.0]),
        (C.NonPositive(), [0.0, -2.0], [1e-3]),
        (C.Interval(1.0, 3.0), [1.0, 2.0, 3.0], [0.5, 3.5]),
        (C.Interval(1.0, 3.0, closed=(False, True)), [3.0], [1.0]),
        (C.GreaterThan(2.0), [2.0, jnp.inf], [1.9]),
        (C.LessThan(-1.0), [-1.0, -jnp.inf], [0.0]),
        (C.RealLine(), [-jnp.inf, 0.0, jnp.inf], [jnp.nan]),
    ],
)
def test_membership_follows_bounds_and_closedness(constraint, inside, outside):
    assert not np.any(constraint.is_outside(jnp.asarray(inside)))
    assert np.all(constraint.is_outside(jnp.asarray(outside)))


@pytest.mark.parametrize(
    "constraint",
    [C.Positive(), C.Negative(), C.Interval(-2.0, 5.0), C.GreaterThan(3.0), C.LessThan(3.0)],
)
def test_bijector_maps_the_real_line_into_the_constraint_and_back(constraint):
    raw = jnp.linspace(-6.0, 6.0, 13)
    value = constraint.bijector.forward(raw)
    assert not np.any(constraint.is_outside(value))
    np.testing.assert_allclose(constraint.bijector.inverse(value), raw, atol=1e-4)


def test_interval_with_an_infinite_end_acts_as_a_half_line_per_element():
    c = C.Interval(jnp.array([0.0, -jnp.inf, 0.0]), jnp.array([1.0, 2.0, jnp.inf]))
    y = c.bijector.forward(jnp.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(y, [0.5, 2.0 - np.log(2.0), np.log(2.0)], rtol=1e-5)
    g = jax.grad(lambda v: jnp.sum(c.bijector.inverse(v)))(jnp.array([0.5, 1.0, 1.0]))
    assert np.all(np.isfinite(g))


def test_interval_base_space_is_the_unit_box_where_both_ends_are_finite():
    c = C.Interval(jnp.array([2.0, 0.0]), jnp.array([6.0, jnp.inf]))
    lo, hi = c.base_bounds
    np.testing.assert_allclose(lo, [0.0, 0.0])
    np.testing.assert_allclose(hi, [1.0, np.inf])
    np.testing.assert_allclose(c.base_bijector.forward(jnp.array([0.25, 3.0])), [3.0, 3.0])


def test_intersect_returns_the_most_specific_class():
    assert isinstance(C.intersect(C.RealLine(), C.Positive()), C.Positive)
    assert isinstance(C.intersect(C.NonNegative(), C.Positive()), C.Positive)
    both = C.intersect(C.Interval(0.0, 2.0), C.Interval(1.0, 3.0))
    assert isinstance(both, C.Interval)
    np.testing.assert_allclose(both.bounds, [1.0, 2.0])
    assert isinstance(C.intersect(C.GreaterThan(1.0), C.RealLine()), C.GreaterThan)
    with pytest.raises(ValueDomainError):
        C.intersect(C.Interval(0.0, 1.0), C.Interval(2.0, 3.0))


def test_transformed_pushes_bounds_through_a_decreasing_bijector():
    t = C.Transformed(
        C.Interval(1.0, 2.0, closed=(True, False)),
        parax.bijectors.ScalarAffine(shift=jnp.array(0.0), scale=jnp.array(-1.0)),
    )
    np.testing.assert_allclose(t.bounds, [-2.0, -1.0])
    assert [bool(c) for c in t.closed] == [False, True]


def test_leafwise_and_custom():
    lw = C.Leafwise({"a": C.Positive(), "b": C.Interval(0.0, 1.0)})
    assert set(lw.bounds[0]) == {"a", "b"}
    y = lw.bijector.forward({"a": jnp.array(0.0), "b": jnp.array(0.0)})
    np.testing.assert_allclose([y["a"], y["b"]], [np.log(2.0), 0.5], rtol=1e-6)
    with pytest.raises(ConfigError, match="empty"):
        C.Leafwise({})
    custom = C.Custom(parax.bijectors.Exp(), bounds=(0.0, jnp.inf), closed=(False, True))
    assert bool(custom.is_outside(jnp.array(0.0)))


def test_constraints_inferred_from_distributions():
    normal = C.infer_distribution_constraint(D.Normal(jnp.array(1.0), jnp.array(2.0)))
    assert normal.closed == (False, False)  # the real line, open at ±inf for a prior
    np.testing.assert_allclose(normal.bijector.forward(jnp.array(1.0)), 3.0)  # loc + scale
    uni = C.infer_distribution_constraint(D.Uniform(jnp.array(0.0), jnp.array(2.0)))
    np.testing.assert_allclose(uni.bounds, [0.0, 2.0])
    np.testing.assert_allclose(uni.bijector.forward(jnp.array(0.0)), 1.0, rtol=1e-6)
    gamma = C.infer_distribution_constraint(D.Gamma(jnp.array(2.0), jnp.array(1.0)))
    np.testing.assert_allclose(gamma.bounds, [0.0, np.inf])
    assert not bool(gamma.closed[0])  # the density is 0 at 0
    lognormal = C.infer_distribution_constraint(D.LogNormal(0.0, 1.0))
    assert not bool(lognormal.closed[0])
    joint = C.infer_distribution_constraint(
        D.Joint({"u": D.Uniform(jnp.array(0.0), jnp.array(1.0))})
    )
    assert isinstance(joint, C.Leafwise)
