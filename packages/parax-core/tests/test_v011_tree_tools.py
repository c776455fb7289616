"""orrery.parax.v011 tree tools: bounds, joint distribution, tree_constrain, tree_replace."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax.v011 as parax
from orrery.interface import ConfigError, ConfigTypeError
from orrery.parax.v011 import constraints as C
from orrery.parax.v011 import distributions as D


class Model(eqx.Module):
    scale: object
    shift: object
    plain: jax.Array


def _model():
    return Model(
        parax.Constrained(C.Interval(0.0, 2.0), value=jnp.array([0.5, 1.0])),
        parax.Random(D.Normal(jnp.array(0.0), jnp.array(1.0)), value=0.1),
        jnp.array(3.0),
    )


def test_tree_bounds():
    lower, upper = parax.tree_bounds(_model())
    np.testing.assert_allclose(lower.scale, [0.0, 0.0])
    np.testing.assert_allclose(upper.scale, [2.0, 2.0])
    assert float(lower.shift) == -np.inf and float(upper.plain) == np.inf
    with pytest.raises(ConfigError, match="neither bounded"):
        parax.tree_bounds({"name": "x"})


def test_tree_joint_distribution_logprob_sums_the_random_parts():
    # as in parax 0.11, every leaf must be probabilistic or a plain array (filter first)
    m = {"shift": _model().shift, "plain": jnp.array([3.0, 4.0])}
    joint = parax.tree_joint_distribution(m)
    value = parax.unwrap(m)
    # plain arrays get the flat improper density (log 1 = 0)
    expected = -0.5 * 0.1**2 - 0.5 * np.log(2 * np.pi)
    assert float(joint.log_prob(value)) == pytest.approx(expected, rel=1e-5)


def test_tree_unconstrained_distribution_includes_the_jacobian():
    m = {"x": parax.Random(D.Uniform(jnp.array(0.0), jnp.array(1.0)), value=0.5)}
    dist = parax.probability.tree_unconstrained_distribution(m)
    # raw space is standard normal through the copula: log N(0; 0, 1) at the median
    assert float(dist.log_prob({"x": jnp.array(0.0)})) == pytest.approx(
        -0.5 * np.log(2 * np.pi), rel=1e-5
    )


def test_tree_constrain():
    m = _model()
    out = parax.tree_constrain(m, Model(C.Interval(0.0, 5.0), C.Positive(), C.RealLine()))
    np.testing.assert_allclose(out.scale.bounds[1], [5.0, 5.0])
    np.testing.assert_allclose(out.scale.value, [0.5, 1.0], rtol=1e-5)
    assert isinstance(parax.as_unwrapped(out.shift.distribution), D.TruncatedNormal)
    with pytest.raises(ConfigTypeError, match="Constrained"):
        parax.tree_constrain({"a": jnp.array(1.0)}, {"a": C.Positive()})


def test_tree_replace_broadcasts_a_field_over_the_chosen_nodes():
    tagged = {"a": parax.Tagged(1.0), "b": parax.Tagged(2.0)}
    out = parax.tree_replace(tagged, is_leaf=parax.is_variable, raw_value=jnp.array(9.0))
    assert float(out["a"].value) == float(out["b"].value) == 9.0  # one value for every node
    per_node = parax.tree_replace(
        tagged, is_leaf=parax.is_variable, raw_value={"a": jnp.array(5.0), "b": jnp.array(6.0)}
    )
    assert (float(per_node["a"].value), float(per_node["b"].value)) == (5.0, 6.0)
    assert parax.tree_replace(tagged) is tagged
    with pytest.raises(TypeError, match="dataclass"):
        parax.tree_replace([1, 2], is_leaf=None, x=0)


def test_tree_named_params_and_remove():
    names = parax.variables.tree_named_params(_model())
    assert list(names) == [".scale", ".shift", ".plain"]
    gone = parax.remove(_model(), parax.is_probabilistic)
    assert gone.shift is None and gone.scale is not None
    assert dataclasses.is_dataclass(gone)
