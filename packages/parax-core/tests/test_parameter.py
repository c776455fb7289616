"""Parameter, ParameterMetadata and partition."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import Normal, Uniform

from orrery.interface import ConfigError, ValueDomainError
from orrery.parax import Parameter, ParameterMetadata, combine, partition
from orrery.parax.bijectors import Exp, Interval


def test_physical_value_is_inverted_into_latent():
    p = Parameter(2.0, transform=Exp(), name="k")
    np.testing.assert_allclose(p.latent, np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(p.value, 2.0, rtol=1e-6)
    assert p.name == "k" and p.transform is not None and p.shape == () and p.size == 1


def test_array_protocols_and_scale():
    p = Parameter([1.0, 2.0], scale=10.0)
    assert isinstance(np.asarray(p), np.ndarray)
    np.testing.assert_allclose(np.asarray(p), [10.0, 20.0])
    np.testing.assert_allclose(jnp.asarray(p), [10.0, 20.0])
    np.testing.assert_allclose(p.value, [1.0, 2.0])
    assert len(p) == 2
    np.testing.assert_allclose(p[1], 20.0)


def test_arithmetic_both_ways():
    p = Parameter(3.0)
    assert float(p + 1) == 4 and float(1 + p) == 4
    assert float(p - 1) == 2 and float(1 - p) == -2
    assert float(p * 2) == 6 and float(2 * p) == 6
    assert float(p / 2) == 1.5 and float(6 / p) == 2
    assert float(p**2) == 9 and float(2**p) == 8 and float(-p) == -3


def test_misspelt_core_keyword_raises_and_unknown_go_to_info():
    with pytest.raises(ConfigError, match="transform"):
        Parameter(1.0, bijector=Exp())
    with pytest.raises(ConfigError, match="scale"):
        Parameter(1.0, scales=2.0)
    p = Parameter(1.0, units="m", info={"note": "x"})
    assert p.info == {"units": "m", "note": "x"}


def test_n_vectorises_value_bounds_and_names():
    p = Parameter(0.5, n=3, bounds=(0.0, 1.0), name="v")
    assert p.shape == (3,) and p.bounds.shape == (3, 2)
    flat = p.flattened()
    assert [q.name for q in flat] == ["v_0", "v_1", "v_2"]
    assert all(q.shape == () for q in flat)
    np.testing.assert_allclose(flat[2].bounds, [0.0, 1.0])
    named = Parameter([1.0, 2.0], name=["a", "b"])
    assert [q.name for q in named.flattened()] == ["a", "b"]
    assert Parameter(1.0).flattened()[0].shape == ()
    with pytest.raises(ValueError):
        Parameter([1.0, 2.0], name=["a", "b", "c"])


def test_flattened_slices_distribution():
    p = Parameter([1.0, 2.0], distribution=Normal(jnp.array([1.0, 2.0]), jnp.array([0.1, 0.2])))
    q = p.flattened()[1]
    np.testing.assert_allclose(q.distribution.scale, 0.2)


def test_copies():
    p = Parameter(1.0)
    assert p.as_fixed().fixed and not p.as_fixed().as_free().fixed
    assert p.copy() is not p
    assert float(p.with_value(5.0).value) == 5.0
    assert p.with_name("z").name == "z"
    d = Normal(jnp.asarray(0.0), jnp.asarray(1.0))
    assert p.with_distribution(d).distribution is d
    with pytest.raises(TypeError):
        p.with_distribution("normal")
    t = Parameter(2.0).with_transform(Exp())
    np.testing.assert_allclose(t.value, 2.0, rtol=1e-6)
    np.testing.assert_allclose(t.latent, np.log(2.0), rtol=1e-6)


def test_latent_keyword():
    p = Parameter(2.0, transform=Exp()).with_value(0.0, latent=True)
    np.testing.assert_allclose(p.value, 1.0)


def test_transformed_keeps_latent_and_maps_bounds_and_distribution():
    p = Parameter(0.5, bounds=(0.0, 1.0), distribution=Uniform(jnp.asarray(0.0), jnp.asarray(1.0)))
    q = p.transformed(Exp())
    np.testing.assert_allclose(q.latent, p.latent)
    np.testing.assert_allclose(q.value, np.exp(0.5), rtol=1e-6)
    np.testing.assert_allclose(q.bounds, [1.0, np.e], rtol=1e-6)
    np.testing.assert_allclose(q.distribution.log_prob(jnp.asarray(1.5)), -np.log(1.5), rtol=1e-5)
    r = q.transformed(Exp())  # chains after the existing transform
    np.testing.assert_allclose(r.value, np.exp(np.exp(0.5)), rtol=1e-5)
    with pytest.raises(TypeError):
        p.transformed(np.exp)


def test_latent_distribution():
    p = Parameter(1.0, transform=Exp(), distribution=Uniform(jnp.asarray(0.5), jnp.asarray(2.0)))
    ld = p.latent_distribution
    # density of log(Y) for Y ~ U(0.5, 2) at x is exp(x) / 1.5
    np.testing.assert_allclose(ld.log_prob(jnp.asarray(0.0)), np.log(1 / 1.5), rtol=1e-5)


def test_nan_from_inverse_names_parameter_and_bounds():
    p = Parameter(0.5, transform=Interval(0.0, 1.0), bounds=(0.0, 1.0), name="frac")
    with pytest.raises(ValueDomainError, match="frac.*bounds"):
        p.with_value(2.0)


def test_json_round_trip_omits_empty_fields():
    p = Parameter(
        [1.0, 2.0],
        name="w",
        transform=Exp(),
        distribution=Normal(jnp.array([1.0, 2.0]), jnp.array([0.5, 0.5])),
        units="s",
    )
    s = p.to_json()
    assert set(json.loads(s)) == {"value", "name", "transform", "distribution", "info"}
    q = Parameter.from_json(s)
    np.testing.assert_allclose(q.value, p.value, rtol=1e-6)
    assert q.name == "w" and q.info == {"units": "s"} and isinstance(q.transform, Exp)
    np.testing.assert_array_equal(q.distribution.scale, p.distribution.scale)
    assert Parameter.from_json(Parameter(1.0).to_json()).value == 1.0


def test_metadata_defaults():
    m = ParameterMetadata()
    assert m.name is None and m.scale == 1.0 and m.info == {}
    p = Parameter(1.0, metadata=ParameterMetadata(name="x", scale=2.0))
    assert p.name == "x" and float(jnp.asarray(p)) == 2.0


def test_partition_semantics():
    tree = {"free": Parameter(1.0), "fixed": Parameter(2.0, fixed=True), "arr": jnp.ones(2)}
    dyn, sta = partition(tree)
    assert dyn["fixed"] is None and dyn["arr"] is None
    assert dyn["free"].latent is not None and dyn["free"].metadata.bounds is None
    assert jax.tree_util.tree_leaves(dyn) == [dyn["free"].latent]
    dyn2, _ = partition(tree, include_fixed=True, include_arrays=True)
    assert len(jax.tree_util.tree_leaves(dyn2)) == 3
    p = Parameter(1.0, bounds=(0.0, 2.0))
    dyn3, _ = partition({"p": p}, param_objects=True)
    assert dyn3["p"] is p
    back = combine(dyn, sta)
    assert float(back["free"].value) == 1.0 and float(back["fixed"].value) == 2.0


def test_grad_through_partition_reaches_latent():
    tree = {"a": Parameter(2.0, transform=Exp()), "b": Parameter(3.0, fixed=True)}
    dyn, sta = partition(tree)

    def loss(d):
        t = combine(d, sta)
        return jnp.asarray(t["a"]) * jnp.asarray(t["b"])

    g = jax.grad(loss)(dyn)
    np.testing.assert_allclose(g["a"].latent, 2.0 * 3.0, rtol=1e-6)  # d(exp(z))/dz = exp(z)


def test_parameter_on_the_left_of_an_operator_defers_to_it():
    import orrery.parax.op as op

    f = op.Lambda(lambda x: x + 1.0)  # f(3) = 4
    p = Parameter(2.0)
    cases = [(p + f, 6.0), (p - f, -2.0), (p * f, 8.0), (p / f, 0.5), (p**f, 16.0)]
    for expr, expected in cases:
        assert float(expr(3.0)) == pytest.approx(expected)
    assert float(p * Parameter(3.0)) == pytest.approx(6.0)
