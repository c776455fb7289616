"""orrery.parax.v011 wrappers: unwrap/wrap, Apply, Freeze, Tie, Parameterize, Static."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax.v011 as parax
from orrery.interface import ConfigError
from orrery.parax.v011 import constraints as C


class Pair(eqx.Module):
    a: object
    b: object


def test_unwrap_resolves_innermost_first():
    inner = parax.Apply(lambda x: x + 1.0, jnp.array(1.0))
    outer = parax.Apply(lambda x: x * 10.0, inner)
    assert float(parax.unwrap(outer)) == 20.0  # (1 + 1) * 10
    m = Pair(parax.Constrained(C.Positive(), value=2.0), parax.Real(3.0))
    out = parax.unwrap(m)
    assert isinstance(out.a, jax.Array) and float(out.a) == pytest.approx(2.0, rel=1e-5)


def test_unwrap_only_if_with_and_without_cascade():
    m = Pair(parax.Freeze(parax.Real(1.0)), parax.Real(2.0))
    cascaded = parax.unwrap(m, only_if=lambda x: isinstance(x, parax.Freeze))
    assert isinstance(cascaded.a, jax.Array) and isinstance(cascaded.b, parax.Real)
    targeted = parax.unwrap(m, only_if=lambda x: isinstance(x, parax.Freeze), cascade=False)
    assert isinstance(targeted.a, parax.Real)  # the Real inside was left wrapped
    assert isinstance(targeted.b, parax.Real)


def test_wrap_inverts_unwrap():
    m = Pair(parax.Constrained(C.Interval(0.0, 4.0), value=1.0), parax.Fixed(2.0))
    new = parax.wrap(m, Pair(jnp.array(3.0), jnp.array(5.0)))
    assert float(new.a.value) == pytest.approx(3.0, rel=1e-5)
    assert isinstance(new.b, parax.Fixed) and float(new.b.value) == 5.0
    back = parax.wrap(m, parax.unwrap(m))
    np.testing.assert_allclose(back.a.raw_value, m.a.raw_value, rtol=1e-5)


def test_freeze_stops_gradients_and_keeps_python_scalars():
    f = lambda x: jnp.sum(parax.unwrap(parax.Freeze({"w": x, "flag": True}))["w"] * x)
    assert jax.grad(f)(3.0) == 3.0  # only the unfrozen factor
    assert parax.unwrap(parax.Freeze({"flag": True}))["flag"] is True
    assert parax.Freeze(parax.Freeze(1.0)).tree == 1.0
    assert parax.is_constant(parax.Freeze(1.0))


def test_parameterize_and_static():
    p = parax.Parameterize(jnp.linspace, 0.0, 1.0, num=3)
    np.testing.assert_allclose(parax.unwrap(p), [0.0, 0.5, 1.0])
    s = parax.as_opaque(jnp.exp)
    assert isinstance(s, parax.Static) and parax.unwrap(s) is jnp.exp
    assert isinstance(parax.as_opaque(jnp.ones(2)), parax.Freeze)


def test_tie_makes_the_target_follow_the_source():
    m = Pair(jnp.array(1.0), jnp.array(7.0))
    tied = parax.Tie(m, target=lambda t: t.b, source=lambda t: t.a, tie_fn=lambda a: 2.0 * a)
    assert jax.tree.leaves(eqx.filter(tied, eqx.is_inexact_array)) == [jnp.array(1.0)]
    assert float(parax.unwrap(tied).b) == 2.0
    grad = jax.grad(lambda t: parax.unwrap(t).b)(tied)
    assert float(grad.tree.a) == 2.0  # gradient flows to the source through the tie


def test_tie_follows_wrapped_paths_and_stacks():
    m = Pair(parax.Constrained(C.Positive(), value=2.0), jnp.array(0.0))
    tied = parax.Tie(m, target=lambda t: t.b, source=lambda t: t.a)
    assert float(parax.unwrap(tied).b) == pytest.approx(2.0, rel=1e-5)
    three = Pair(jnp.array(1.0), Pair(jnp.array(0.0), jnp.array(0.0)))
    t1 = parax.Tie(three, target=lambda t: t.b.a, source=lambda t: t.a)
    t2 = parax.Tie(t1, target=lambda t: t.b.b, source=lambda t: t.a, tie_fn=lambda a: -a)
    out = parax.unwrap(t2)
    assert (float(out.b.a), float(out.b.b)) == (1.0, -1.0)


def test_constrain_and_probabilize_wrappers():
    c = parax.Constrain(C.Positive(), {"x": jnp.array(2.0)}["x"])
    assert float(parax.unwrap(c)) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ConfigError, match="exactly one"):
        parax.Constrain(C.Positive())
    dist = parax.distributions.Uniform(jnp.array(0.0), jnp.array(1.0))
    p = parax.Probabilize(dist, jnp.array(0.25))
    assert float(p.unwrap()) == pytest.approx(0.25, rel=1e-5)
    np.testing.assert_allclose(p.bounds, [0.0, 1.0])


def test_apply_leaves_non_arrays_alone_and_unwrap_self():
    a = parax.Apply(lambda x: x * 2, {"x": jnp.array(1.0), "name": "keep"})
    assert parax.unwrap(a) == {"x": 2.0, "name": "keep"}

    class Model(eqx.Module):
        w: object

        @parax.unwrap_self
        def __call__(self, x):
            return self.w * x

    assert float(Model(parax.Constrained(C.Positive(), value=3.0))(2.0)) == pytest.approx(6.0)
