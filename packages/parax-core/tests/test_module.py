"""Module: conversion, name building and every inspection / with_* method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import MultivariateNormalDiag, Normal, Uniform

from orrery.interface import ConfigError, ShapeError, ValueDomainError
from orrery.parax import Module, Parameter, ParameterGroup, field
from orrery.parax import parameters as pp
from orrery.parax.bijectors import Exp


class Lin(Module):
    a: Parameter
    b: Parameter = 1.0

    def __call__(self, x):
        return self.a * x + self.b


class Hidden(Module, transparent=True):
    c: Parameter


class Net(Module):
    first: Lin
    second: Lin
    layers: list
    extra: dict
    hidden: Hidden
    inner: Lin = field(transparent=True, default=None)


def make_net():
    return Net(
        first=Lin(1.0, name="l1"),
        second=Lin(Parameter([2.0, 3.0]), 4.0),
        layers=[Lin(5.0), Lin(6.0, name="six")],
        extra={"k": Parameter(7.0), "z": Parameter(8.0, name="eight")},
        hidden=Hidden(9.0),
        inner=Lin(10.0, Parameter(11.0, fixed=True)),
        name="root",
    )


NAMES = [
    "l1_a", "l1_b", "second_a", "second_b", "layers_0_a", "layers_0_b",
    "layers_six_a", "layers_six_b", "extra_k", "extra_z", "hidden", "a",
]  # fmt: skip


def test_parameter_fields_are_converted():
    m = Lin(a=2.0)
    assert isinstance(m.a, Parameter) and isinstance(m.b, Parameter)
    assert float(m(3.0)) == 7.0


def test_name_building_rules():
    net = make_net()
    assert net.param_names() == NAMES
    assert net.param_names(include_fixed=True) == [*NAMES, "b"]
    assert net.flat_param_names()[2:4] == ["second_a_0", "second_a_1"]
    assert net.num_params == 12 and net.num_flat_params == 13


def test_duplicate_names_raise():
    class Two(Module):
        x: Parameter
        y: Parameter

    with pytest.raises(ValueError, match="duplicate"):
        Two(Parameter(1.0, name="z"), Parameter(2.0, name="z")).param_names()


def test_inspection_methods():
    net = make_net()
    assert list(net.named_params("l1_a")) == ["l1_a"]
    assert net.param_names(lambda n: "six" in n) == ["layers_six_a", "layers_six_b"]
    assert float(net.param_value("layers_six_a")) == 6.0
    assert float(net.param("b").value) == 11.0  # fixed ones are reachable by name
    assert float(net.named_param_values()["extra_k"]) == 7.0
    assert len(net.params()) == 12 and len(net.param_values()) == 12
    flat = net.named_flat_param_values(return_floats=True)
    assert flat["second_a_1"] == 3.0
    assert len(net.flat_params()) == 13
    np.testing.assert_allclose(net.flat_param_values()[:4], [1.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(net.named_flat_params()["second_a_0"].value, 2.0)
    assert [n for n, _ in net.iter_params(flatten=True)] == net.flat_param_names()
    assert net.param_names(submodules="layers_six") == ["layers_six_a", "layers_six_b"]
    assert net.param_names(submodules=[net.first]) == ["l1_a", "l1_b"]
    scaled = Lin(Parameter(2.0, scale=3.0))
    assert float(scaled.named_param_values(scaled=True)["a"]) == 6.0
    assert float(scaled.named_param_values()["a"]) == 2.0


def test_latent_and_physical_views():
    m = Lin(Parameter(2.0, transform=Exp()))
    np.testing.assert_allclose(m.param_value("a"), 2.0, rtol=1e-6)
    np.testing.assert_allclose(m.named_param_values(latent=True)["a"], np.log(2.0), rtol=1e-6)
    m2 = m.with_params({"a": 5.0})
    np.testing.assert_allclose(m2.a.latent, np.log(5.0), rtol=1e-6)
    m3 = m.with_params({"a": 0.0}, latent=True)
    np.testing.assert_allclose(m3.param_value("a"), 1.0)


def test_with_params_forms_and_errors():
    net = make_net()
    m = net.with_params({"l1_a": 5.0, "second_a_1": 9.0}, layers_six_b=-1.0)
    assert float(m.param_value("l1_a")) == 5.0
    np.testing.assert_allclose(m.param_value("second_a"), [2.0, 9.0])
    assert float(m.param_value("layers_six_b")) == -1.0
    values = np.arange(13.0)
    m = net.with_params(values)
    np.testing.assert_allclose(m.flat_param_values(), values)
    assert float(m.param_value("b")) == 11.0  # fixed parameters untouched
    m = net.with_params(np.arange(14.0), include_fixed=True)
    assert float(m.param_value("b")) == 13.0
    with pytest.raises(ShapeError, match="13"):
        net.with_params(np.arange(12.0))
    with pytest.raises(ConfigError, match="l1_a"):
        net.with_params({"l1_aa": 1.0})
    assert net.with_params({"nope": 1.0}, check_unknown=False).param_names() == NAMES
    with pytest.raises(ConfigError, match="missing"):
        net.with_params({"l1_a": 1.0}, check_missing=True)
    fixed = net.with_params({"l1_a": 1.0}, fix_others=True)
    assert fixed.param_names() == ["l1_a"]
    new = Parameter(42.0, fixed=True)
    assert net.with_params({"hidden": new}).hidden.c is new


def test_with_params_is_traceable():
    m = Lin(Parameter(2.0, transform=Exp()), 1.0)
    f = jax.jit(lambda x: m.with_params(x)(2.0))
    np.testing.assert_allclose(f(jnp.array([3.0, 1.0])), 7.0, rtol=1e-6)


def test_mapped_fixed_free():
    net = make_net()
    m = net.with_mapped_params(lambda p: p.with_value(p.value * 2), "l1", prefixes=True)
    assert float(m.param_value("l1_a")) == 2.0 and float(m.param_value("l1_b")) == 2.0
    m = net.with_mapped_params(lambda p: p, ["layers_six_a"], map_others=lambda p: p.as_fixed())
    assert m.param_names() == ["layers_six_a"]
    assert net.with_fixed_params(["l1_a", "hidden"]).num_params == 10
    assert net.with_fixed_params("hidden", free_others=True).num_params == 12
    assert net.with_free_params("b").num_params == 13
    assert net.with_free_params_only(["b", "hidden"]).param_names() == ["hidden", "b"]
    assert net.with_all_params_fixed().num_params == 0
    assert net.with_all_params_free().num_params == 13
    with pytest.raises(ConfigError, match="did you mean"):
        net.with_fixed_params("l1_x")
    m = net.with_mapped_params(lambda p: p.as_fixed(), "zzz", ignore_unknown=True)
    assert m.num_params == 12
    m = net.with_transformed_params(Exp(), "extra_k")
    np.testing.assert_allclose(m.param_value("extra_k"), np.exp(7.0), rtol=1e-5)
    assert net.with_fixed_params([net.first.a]).num_params == 11


def test_param_groups():
    m = Lin(1.0, 2.0)
    g = ParameterGroup(["a", "b"], name="ab", distribution=MultivariateNormalDiag(jnp.zeros(2)))
    assert g.num_params == 2
    m = m.with_param_groups(g)
    assert [x.name for x in m.param_groups()] == ["ab"]
    m2 = m.with_param_groups(ParameterGroup(["a"], name="only_a"))  # atomic replacement
    names = [x.param_names for x in m2.param_groups()]
    assert names == [["a"], ["b"]]
    assert [x.name for x in m2.param_groups(explicit_only=True)] == ["only_a"]
    assert m.with_no_param_groups().param_groups(explicit_only=True) == []
    with pytest.raises(ConfigError):
        m.with_param_groups(ParameterGroup(["q"]))
    with pytest.raises(TypeError):
        g.with_distribution("x")
    assert g.transformed(Exp()).transform is not None


def test_groups_prefixed_and_demoted():
    class Outer(Module):
        inner: Lin
        d: Parameter

    outer = Outer(Lin(1.0, 2.0, name="in"), 3.0)
    outer = outer.with_param_groups(ParameterGroup(["in_a", "in_b"], name="g"))
    assert outer.param_groups(explicit_only=True)[0].param_names == ["in_a", "in_b"]
    demoted = outer.with_demoted_param_groups()
    assert demoted._param_groups == ()
    assert demoted.inner._param_groups[0].param_names == ["a", "b"]
    assert demoted.param_groups(explicit_only=True)[0].param_names == ["in_a", "in_b"]
    parent = demoted.with_param_groups(ParameterGroup(["in_a", "d"], name="p"))
    groups = parent.param_groups(explicit_only=True)
    assert [x.name for x in groups] == ["p"]  # parent claim drops the child group


def test_distribution_edits():
    m = Lin(pp.Normal(1.0, 0.1), pp.Normal(2.0, 0.2))
    wide = m.with_mapped_distributions(lambda d: Normal(d.loc, d.scale * 10))
    np.testing.assert_allclose(wide.b.distribution.scale, 2.0, rtol=1e-6)
    only_a = m.with_mapped_distributions(
        lambda d: Normal(d.loc, d.scale * 10), lambda d: float(d.loc) < 1.5
    )
    np.testing.assert_allclose(only_a.b.distribution.scale, 0.2, rtol=1e-6)
    u = Lin(2.0, -4.0).with_uniform_distributions(0.1)
    assert isinstance(u.a.distribution, Uniform)
    np.testing.assert_allclose([u.b.distribution.low, u.b.distribution.high], [-4.4, -3.6])
    bounded = Lin(Parameter(2.0, bounds=(1.9, 5.0))).with_uniform_distributions(
        0.1, "a", respect_bounds=True
    )
    np.testing.assert_allclose(bounded.a.distribution.low, 1.9, rtol=1e-6)
    assert Lin(0.0).with_uniform_distributions(0.1).a.distribution is None
    joint = Normal(jnp.zeros(2), 1.0)  # one value per name (a scalar one is refused)
    g = Lin(1.0).with_param_groups(ParameterGroup(["a", "b"], distribution=joint))
    g2 = g.with_mapped_distributions(lambda d: Normal(d.loc, 5.0), param_groups=True)
    assert float(g2._param_groups[0].distribution.scale) == 5.0


def test_fields_and_structure():
    net = make_net()
    assert net.with_name("other").name == "other"
    assert net.with_fields(hidden=Hidden(1.5)).param_value("hidden") == 1.5
    assert float(net.with_attrs("first.a", 3.0).param_value("l1_a")) == 3.0
    m = net.with_attrs({"layers.0.a": 4.0}, name="x")
    assert float(m.param_value("layers_0_a")) == 4.0 and m.name == "x"
    assert m.with_attrs(_transparent=True)._transparent is True
    m = net.with_submodules("layers_six", Lin(0.5))
    assert m.param_names()[6] == "layers_1_a"
    m = net.with_submodules({"l1": Lin(7.0, name="l1")})
    assert float(m.param_value("l1_a")) == 7.0
    with pytest.raises(ConfigError):
        net.with_submodules("nope", Lin(1.0))
    m = net.with_submodule_fields("layers.1", name="renamed")
    assert "layers_renamed_a" in m.param_names()
    assert net.with_fixed_submodules(["l1", "layers_six"]).num_params == 8
    assert net.with_free_submodules("inner").num_params == 13
    assert net.with_free_submodules_only("inner").param_names() == ["a"]
    assert net.with_free_submodules_only("inner", include_fixed=True).param_names() == ["a", "b"]
    assert len(net.children()) == 6 and len(net.submodules()) == 6
    assert net.copy().param_names() == NAMES
    path = jax.tree_util.tree_flatten_with_path(net, is_leaf=lambda x: isinstance(x, Parameter))
    assert net.path_to_param_name(path[0][0][0]) == "l1_a"


def test_with_defaults_and_merged():
    Lin3 = Lin.with_defaults(b=3.0)
    assert float(Lin3(1.0).param_value("b")) == 3.0 and issubclass(Lin3, Lin)
    base = Lin(1.0, 2.0)
    fit_a = base.with_free_params_only("a").with_params({"a": 10.0})
    fit_b = base.with_free_params_only("b").with_params({"b": 20.0})
    merged = base.merged([fit_a, fit_b])
    assert merged.param_values() == [10.0, 20.0]


class Many(Module):
    params: list


def test_large_modules_use_one_batched_update():
    n = 80  # above the batching threshold
    ps = [Parameter(1.0 + i, transform=Exp() if i % 2 else None, name=f"p{i}") for i in range(n)]
    m = Many(ps)
    values = np.linspace(0.5, 2.0, n)
    out = m.with_params(values)
    np.testing.assert_allclose(out.flat_param_values(), values, rtol=1e-6)
    np.testing.assert_allclose(out.params[1].latent, np.log(values[1]), rtol=1e-6)
    as_dict = {f"params_p{i}": float(v) for i, v in enumerate(values)}
    np.testing.assert_allclose(m.with_params(as_dict).flat_param_values(), values, rtol=1e-6)
    values[3] = -1.0  # outside the domain of Exp
    with pytest.raises(ValueDomainError, match="p3"):
        m.with_params(values)


def test_duplicate_flat_names_raise_and_with_modules_alias():
    class Two(Module):
        v: Parameter
        w: Parameter

    m = Two(Parameter([1.0, 2.0], name="x"), Parameter(3.0, name="x_1"))
    assert m.param_names() == ["x", "x_1"]
    with pytest.raises(ValueError, match="x_1"):
        m.flat_param_names()
    base = Lin(1.0, 2.0)
    other = base.with_free_params_only("a").with_params({"a": 4.0})
    assert base.with_modules(other).param_values() == [4.0, 2.0]
