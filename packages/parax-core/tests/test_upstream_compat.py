"""Code written for parax 0.4 runs on orrery.parax and gives parax's numbers (issue 13).

One test per behaviour, written with upstream-style calls only (``import ... as parax``,
callable-first operators, ``latent_value``, top-level factories); expected numbers are
worked out by hand in the comments.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import Normal as DNormal

import orrery.parax as parax
from orrery.interface import ConfigError
from orrery.parax import Fixed, Free, Normal, Uniform, op
from orrery.parax.bijectors import Exp


class Line(parax.Module):
    slope: parax.Parameter
    offset: parax.Parameter

    def __call__(self, x):
        return self.slope * x + self.offset


class Outer(parax.Module):
    inner: Line
    w: parax.Parameter


def _const(v):
    return op.Constant(jnp.asarray(v))


# -- silent wrong results -----------------------------------------------------------------


def test_binary_takes_the_callable_first():
    assert float(op.Binary(jnp.subtract, 2.0, 3.0)()) == -1.0  # 2 - 3
    assert float(op.Binary(jnp.subtract, _const(2.0), _const(3.0))()) == -1.0


def test_map_takes_the_callable_first():
    assert float(op.Map(jnp.negative, _const(2.0))()) == -2.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: op.Binary(_const(2.0), _const(3.0), jnp.subtract),  # old orrery order
        lambda: op.Binary(2.0, 3.0, jnp.subtract),
        lambda: op.Map(_const(2.0), jnp.negative),
        lambda: op.Map(2.0, jnp.negative),
    ],
)
def test_the_old_orrery_order_raises_instead_of_computing(make):
    with pytest.raises(ConfigError, match="fn"):
        make()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "cap2"},
        {"fixed": True},
        {"transform": Exp()},
        {"distribution": DNormal(jnp.asarray(1.0), jnp.asarray(2.0))},
        {"bounds": (0.0, 5.0)},
        {"scale": 3.0},
        {"info": {"units": "F"}},
    ],
)
def test_dataclasses_replace_keeps_the_value(change):
    p = parax.Parameter(value=1.0, name="cap")
    q = dataclasses.replace(p, **change)
    assert float(q.value) == 1.0
    assert "latent" not in q.info and "latent_value" not in q.info
    for key, val in change.items():
        if key in ("name", "fixed", "scale"):
            assert getattr(q, key) == val


def test_dataclasses_replace_with_a_transform_keeps_the_value_exactly():
    p = parax.Parameter(value=1.0, name="cap", transform=Exp())
    q = dataclasses.replace(p, name="cap2")
    assert q.latent_value is p.latent_value  # not even recomputed
    assert float(dataclasses.replace(p, transform=None).value) == pytest.approx(1.0)


def test_latent_value_keyword_is_the_latent_field():
    p = parax.Parameter(latent_value=jnp.log(2.0), transform=Exp())
    assert float(p.value) == pytest.approx(2.0)  # exp(log 2)
    assert p.info == {}
    assert float(p.latent_value) == pytest.approx(np.log(2.0))
    assert p.latent is p.latent_value  # orrery's older name stays as an alias


def test_field_keywords_are_never_swallowed_into_info():
    p = parax.Parameter(1.0, units="m", name="x", scale=2.0)
    assert p.info == {"units": "m"}  # unknown keywords still go to info, as upstream
    assert p.name == "x" and p.scale == 2.0
    with pytest.raises(ConfigError):
        parax.Parameter(1.0, latent_value=0.0)  # both spellings of the value


# -- names and behaviours -----------------------------------------------------------------


def test_top_level_exports():
    for name in (
        "Uniform RelativeUniform CenteredUniform Normal RelativeNormal Fixed Free OpInputs "
        "OpOutputs is_param is_valid_param is_free_param is_fixed_param as_param"
    ).split():
        assert name in parax.__all__ and hasattr(parax, name), name
    assert Fixed(3.0).fixed and not Free(3.0).fixed
    assert float(parax.CenteredUniform(2.0, 1.0).value) == 2.0
    assert float(parax.RelativeUniform(10.0, 0.1).bounds[1]) == pytest.approx(11.0)
    assert float(parax.RelativeNormal(10.0, 0.1).distribution.stddev()) == pytest.approx(1.0)


def test_param_predicates_and_as_param():
    free, fixed = parax.Parameter(1.0), parax.Parameter(1.0, fixed=True)
    assert parax.is_param(free) and not parax.is_param(1.0)
    assert parax.is_free_param(free) and not parax.is_free_param(fixed)
    assert parax.is_fixed_param(fixed) and not parax.is_fixed_param(free)
    _, static = parax.partition({"p": free})
    assert parax.is_param(static["p"]) and not parax.is_valid_param(static["p"])
    out = parax.as_param({"a": 1.0, "b": [2.0, free]}, fixed=True)
    assert out["a"].fixed and out["b"][0].fixed and out["b"][1] is free


def test_parameter_behaves_like_an_array():
    p, v = parax.Parameter(2.5), parax.Parameter([1.0, 2.0, 3.0])
    assert float(p) == 2.5 and int(p) == 2 and bool(p) is True
    assert len(p) == 1 and len(v) == 3  # 1 for a scalar, as upstream's docstring says
    np.testing.assert_array_equal(np.asarray(v), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(jnp.asarray(v), [1.0, 2.0, 3.0])
    assert float(v[1]) == 2.0
    np.testing.assert_array_equal(v < 2.0, [True, False, False])
    np.testing.assert_array_equal(v >= 2.0, [False, True, True])
    assert float(v @ v) == 14.0  # 1 + 4 + 9
    np.testing.assert_array_equal(-v, [-1.0, -2.0, -3.0])
    np.testing.assert_array_equal(v**2, [1.0, 4.0, 9.0])
    np.testing.assert_array_equal(2.0**v, [2.0, 4.0, 8.0])


def test_with_mapped_distributions_without_filter_maps_every_parameter():
    line = Line(slope=Normal(2.0, 1.0), offset=0.5)  # offset has no distribution
    seen = []

    def mapper(d):
        seen.append(d)
        return DNormal(jnp.asarray(0.0), jnp.asarray(1.0))

    out = line.with_mapped_distributions(mapper)
    assert len(seen) == 2 and seen[1] is None
    assert isinstance(out.offset.distribution, DNormal)


def test_with_uniform_distributions_defaults_to_free_parameters():
    line = Line(slope=2.0, offset=Fixed(4.0))
    out = line.with_uniform_distributions(0.1)
    lo, hi = float(out.slope.distribution.low), float(out.slope.distribution.high)
    assert (lo, hi) == pytest.approx((1.8, 2.2))  # 2 * (1 ± 0.1)
    assert out.offset.distribution is None  # fixed: untouched unless include_fixed=True
    both = line.with_uniform_distributions(0.5, include_fixed=True)
    assert float(both.offset.distribution.high) == pytest.approx(6.0)  # 4 * 1.5


def test_with_uniform_distributions_keeps_all_zero_parameters_as_they_are():
    line = Line(slope=Normal(0.0, 1.0), offset=0.0)
    out = line.with_uniform_distributions(0.1)
    assert out.slope.distribution is line.slope.distribution
    assert out.offset.distribution is None


def test_getitem_takes_a_string_path():
    m = Outer(inner=Line(slope=2.0, offset=1.0), w=[1.0, 2.0])
    assert float(m["inner_slope"].value) == 2.0
    assert float(m["w_1"].value) == 2.0  # flat name of a vector parameter
    assert m["inner"] is m.inner and float(m["inner.offset"].value) == 1.0
    with pytest.raises(ConfigError, match="inner_slope"):
        m["inner_slop"]


def test_saveable_and_validate_params():
    line = Line(slope=Uniform(0.0, 4.0, value=2.0), offset=1.0)
    assert line.saveable.param_names() == ["slope", "offset"]
    assert line.validate_params() is line
    outside = parax.Parameter(latent_value=9.0, distribution=line.slope.distribution)
    bad = Line(slope=outside, offset=1.0)  # 9 is outside the support [0, 4]
    with pytest.raises(ValueError, match="slope"):
        bad.validate_params()


def test_parameter_metadata_item_access_reads_info():
    p = parax.Parameter(1.0, units="m/s")
    assert p.metadata["units"] == "m/s"
    assert "units" in p.metadata and "other" not in p.metadata


def test_flatness_accepts_order():
    y = jnp.array([0.0, 1.0, 4.0, 9.0, 16.0])  # x**2 on x = 0..4
    grid = {"f": jnp.arange(5.0)}
    first = op.Flatness(op.Lambda(lambda a, g: a), "f")
    second = op.Flatness(op.Lambda(lambda a, g: a), "f", order=2)
    assert float(first(y, grid)[2]) == 4.0  # central difference (9 - 1) / 2
    assert float(second(y, grid)[2]) == 2.0  # gradient of [1, 2, 4, 6, 7] at 2: (6 - 2) / 2


def test_negate_and_both_forms_of_sum():
    x = op.Lambda(lambda v: v)
    v = jnp.array([1.0, 2.0])
    np.testing.assert_array_equal(op.Negate(x)(v), [-1.0, -2.0])
    np.testing.assert_array_equal(op.Sum([x, x, 1.0])(v), [3.0, 5.0])  # 2v + 1
    assert float(op.Sum(x)(v)) == 3.0  # the reduction form


def test_parameter_group_param_names_is_a_list():
    g = parax.ParameterGroup(("a", "b"), name="g")
    assert isinstance(g.param_names, list) and g.param_names == ["a", "b"]
    assert hash(g)  # still usable as static data


def test_replace_and_construct_by_latent_value():
    p = parax.Parameter(2.0, transform=Exp(), bounds=(0.0, 5.0))
    q = dataclasses.replace(p, latent_value=jnp.log(3.0))
    assert float(q.value) == pytest.approx(3.0)  # exp(log 3)
    assert float(parax.Parameter(latent=0.0, transform=Exp()).value) == 1.0  # alias
    with pytest.raises(ValueError, match="outside its bounds"):
        dataclasses.replace(p, latent_value=jnp.log(30.0))  # 30 > 5


# -- audit against parax 0.4.11's source (each failed before its fix) ---------------------


def test_with_mapped_distributions_filter_is_asked_about_missing_distributions():
    # parax 0.4 calls dist_filter(node.distribution) for every parameter, None included,
    # so "give a prior to every parameter that has none" maps the offset.
    line = Line(slope=Normal(2.0, 1.0), offset=0.5)
    prior = DNormal(jnp.asarray(0.0), jnp.asarray(10.0))
    out = line.with_mapped_distributions(lambda d: prior, lambda d: d is None)
    assert out.offset.distribution is prior
    assert out.slope.distribution is line.slope.distribution  # rejected, no map_others
    seen = []
    line.with_mapped_distributions(lambda d: d, lambda d: seen.append(d) or False)
    assert len(seen) == 2 and seen[1] is None  # the filter saw both parameters


def test_relative_uniform_takes_the_value_positionally():
    # parax 0.4: RelativeUniform(mean, deviation_fraction, *args) hands *args to Uniform,
    # whose third positional argument is the value.
    p = parax.RelativeUniform(10.0, 0.1, 10.5)
    assert float(p.value) == pytest.approx(10.5)
    assert (float(p.distribution.low), float(p.distribution.high)) == pytest.approx((9.0, 11.0))
    assert float(parax.RelativeUniform(-10.0, 0.1).value) == -10.0  # default: the mean


class _Wrapper(parax.Module, transparent=True):
    inner: Line


class _Top(parax.Module):
    wrapped: _Wrapper
    table: dict


def test_a_transparent_module_hides_its_fields_not_itself():
    # parax 0.4's path_to_param_name drops the segment of an attribute *of* a transparent
    # module (the module's own attribute name stays); a dict key always names its item,
    # even an explicitly named one (only attributes and sequence items take the name).
    top = _Top(
        wrapped=_Wrapper(inner=Line(slope=1.0, offset=2.0)),
        table={"k": parax.Parameter(3.0, name="kk"), "m": Line(4.0, 5.0, name="lin")},
    )
    names = ["wrapped_slope", "wrapped_offset", "table_k", "table_m_slope", "table_m_offset"]
    assert top.param_names() == names
    assert list(top.named_param_values()) == names
    out = top.with_params({"wrapped_slope": 7.0, "table_k": 8.0})
    assert float(out.wrapped.inner.slope.value) == 7.0 and float(out.table["k"].value) == 8.0
    assert top.with_free_submodules_only("wrapped").param_names() == names[:2]


def test_with_params_takes_a_list_of_flat_values():
    # parax 0.4 turns the sequence into an array; it raised TypeError in jnp.reshape.
    line = Line(slope=2.0, offset=1.0)
    out = line.with_params([3.0, 4.0])
    assert out.named_flat_param_values(return_floats=True) == {"slope": 3.0, "offset": 4.0}
    assert float(line.with_params((5.0, 6.0)).offset.value) == 6.0


def test_parameter_arithmetic_takes_lists():
    # parax 0.4's +, -, *, / wrap the other operand in jnp.array, as for a scaled value.
    p = parax.Parameter(2.0, scale=3.0)  # 6.0 as an array
    np.testing.assert_array_equal(p * [1.0, 2.0], [6.0, 12.0])
    np.testing.assert_array_equal([1.0, 2.0] * p, [6.0, 12.0])
    np.testing.assert_array_equal(p + [1.0, 2.0], [7.0, 8.0])  # noqa: RUF005 (elementwise)
    np.testing.assert_array_equal([1.0, 2.0] + p, [7.0, 8.0])  # noqa: RUF005
    np.testing.assert_array_equal(p - (1.0, 2.0), [5.0, 4.0])
    np.testing.assert_array_equal((1.0, 2.0) - p, [-5.0, -4.0])
    np.testing.assert_array_equal(p / [2.0, 3.0], [3.0, 2.0])
    np.testing.assert_array_equal([12.0, 18.0] / p, [2.0, 3.0])


def test_parax_04_submodule_paths_import():
    # parax 0.4's own tests import from these modules (parax.parameter_metadata, ...).
    import importlib

    paths = {
        "parameter_metadata": ["ParameterMetadata"],
        "parameter_group": ["ParameterGroup"],
        "field": ["field"],
        "serialization": ["load", "save"],
        "parameter": ["Parameter", "is_param", "as_param"],
        "parameters": ["Uniform", "Normal", "Fixed", "Free"],
        "module": ["Module"],
        "tree": ["partition"],
        "operator": ["Operator", "OpInputs", "OpOutputs"],
    }
    for mod, names in paths.items():
        m = importlib.import_module(f"orrery.parax.{mod}")
        for name in names:
            assert getattr(m, name) is getattr(parax, name), (mod, name)
    field_module = importlib.import_module("orrery.parax.field")
    assert callable(parax.field) and parax.field is field_module.field


def test_factories_take_latent_value_instead_of_a_value():
    # parax 0.4.11: Uniform/Normal/Fixed/Free(..., latent_value=z) build from the latent
    # value (no default value is filled in); Fixed/Free without either raise.
    u = parax.Uniform(0.0, 4.0, latent_value=1.0)
    assert float(u.value) == 1.0 and float(u.distribution.high) == 4.0
    assert float(parax.Normal(0.0, 1.0, latent_value=0.5).value) == 0.5
    f = parax.Fixed(latent_value=jnp.log(2.0), transform=Exp())
    assert f.fixed and float(f.value) == pytest.approx(2.0)  # exp(log 2)
    free = parax.Free(latent_value=0.0, transform=Exp())
    assert not free.fixed and float(free.value) == 1.0
    assert float(parax.RelativeUniform(10.0, 0.1, latent_value=10.5).value) == 10.5
    for make in (parax.Fixed, parax.Free):
        with pytest.raises(ValueError, match="latent_value"):
            make()
    with pytest.raises(ValueError, match="not both"):
        parax.Uniform(0.0, 4.0, 1.0, latent_value=1.0)


def test_from_json_reads_parax_04_json():
    # parax 0.4.11's Parameter.to_json layout: "fixed" and "scale" always, "value" (or
    # "latent_value" with a transform), distributions as {"class", "params"} and
    # transforms as {"class", "module", "params"}; ours raised "entry lacks '__t'".
    import json

    normal = {
        "fixed": False,
        "scale": 1.0,
        "value": 1.0,
        "distribution": {"class": "Normal", "params": {"loc": 1.0, "scale": 2.0}},
        "name": "n",
        "info": {"units": "m"},
    }
    p = parax.Parameter.from_json(json.dumps(normal))
    assert float(p.value) == 1.0 and p.name == "n" and p.info == {"units": "m"}
    assert float(p.distribution.scale) == 2.0
    assert float(p.distribution.log_prob(jnp.asarray(1.0))) == pytest.approx(
        -np.log(2.0) - 0.5 * np.log(2 * np.pi)
    )
    uniform = {
        "fixed": True,
        "scale": 3.0,
        "value": [1.0, 2.0],
        "distribution": {"class": "Uniform", "params": {"low": [0.0, 1.0], "high": [2.0, 3.0]}},
    }
    u = parax.Parameter.from_json(json.dumps(uniform))
    assert u.fixed and u.scale == 3.0
    np.testing.assert_array_equal(u.distribution.high, [2.0, 3.0])
    tanh = {
        "fixed": False,
        "scale": 1.0,
        "latent_value": 0.5,
        "transform": {"class": "Tanh", "module": "distreqx.bijectors._tanh", "params": {}},
    }
    t = parax.Parameter.from_json(json.dumps(tanh))
    assert float(t.latent_value) == 0.5 and float(t.value) == pytest.approx(np.tanh(0.5))
    # Only distreqx / orrery.parax classes are looked up; nothing named is imported.
    bad = dict(tanh, transform={"class": "system", "module": "os", "params": {}})
    with pytest.raises(ValueError, match="system"):
        parax.Parameter.from_json(json.dumps(bad))


def test_a_field_annotated_parameter_or_none_is_converted():
    # parax 0.4 converts a field annotated `Parameter | None` (its first type); here the
    # value stayed a float, silently left out of param_names and of every fit.
    import typing

    class Opt(parax.Module):
        a: parax.Parameter
        c: parax.Parameter | None = None
        d: typing.Optional[parax.Parameter] = None  # noqa: UP045 (the spelling under test)

    m = Opt(a=1.0, c=5.0, d=6.0)
    assert isinstance(m.c, parax.Parameter) and isinstance(m.d, parax.Parameter)
    assert m.param_names() == ["a", "c", "d"]
    assert Opt(a=1.0).c is None and Opt(a=1.0).param_names() == ["a"]
