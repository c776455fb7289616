"""Bad input at the public boundaries raises the exact orrery error class (issue 16)."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax as px
from orrery.interface import ArtifactError, ConfigError, ShapeError, ValueDomainError, save_artifact
from orrery.parax import Module, Parameter, op
from orrery.parax.bijectors import Exp


@px.register_loadable
class Pair(Module):
    a: Parameter
    b: Parameter

    def __call__(self, x):
        return self.a * x + self.b


# -- factories and bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: px.Uniform(float("nan"), 1.0),
        lambda: px.Uniform(0.0, float("inf")),
        lambda: px.Uniform(1.0, 0.0),
        lambda: px.Uniform(1.0, 1.0),
        lambda: px.Uniform([0.0, 2.0], [1.0, 1.0]),
        lambda: px.Normal(0.0, -1.0),
        lambda: px.Normal(float("nan"), 1.0),
        lambda: px.Normal(0.0, 0.0),
        lambda: px.CenteredUniform(0.0, 0.0),
        lambda: px.RelativeUniform(0.0, 0.1),
        lambda: px.RelativeUniform(1.0, -0.1),
        lambda: px.RelativeNormal(1.0, float("inf")),
    ],
)
def test_factories_refuse_non_finite_or_inverted_arguments(make):
    with pytest.raises(ValueDomainError):
        make()


def test_factory_argument_of_the_wrong_type():
    with pytest.raises(ConfigError, match="low") as err:
        px.Uniform("a", 1.0)
    assert isinstance(err.value, TypeError)
    with pytest.raises(ShapeError, match="low, high"):
        px.Uniform([0.0, 1.0, 2.0], [3.0, 4.0])


def test_values_outside_declared_bounds_are_refused():
    with pytest.raises(ValueDomainError, match="outside its bounds"):
        px.Uniform(0.0, 1.0, value=2.0)
    with pytest.raises(ValueDomainError, match="outside its bounds"):
        Parameter(5.0, bounds=(0.0, 1.0))
    p = px.Uniform(0.0, 1.0)
    with pytest.raises(ValueDomainError, match="value"):
        p.with_value(1.5)
    with pytest.raises(ValueDomainError):
        p.with_value(-1.0, latent=True)
    with pytest.raises(ValueDomainError):
        p.with_bounds((0.8, 1.0))  # the current value 0.5 would be outside
    m = Pair(a=px.Uniform(0.0, 1.0), b=0.0)
    with pytest.raises(ValueDomainError, match="outside its bounds"):
        m.with_params({"a": 3.0})
    with pytest.raises(ValueDomainError):
        m.with_params(jnp.array([3.0, 0.0]))


def test_values_outside_bounds_are_refused_on_the_batched_path():
    class Many(Module):
        w: Parameter

    m = Many(w=Parameter(jnp.full(100, 0.5), bounds=(0.0, 1.0)))
    values = {f"w_{i}": 0.5 for i in range(100)}
    values["w_7"] = 2.0
    with pytest.raises(ValueDomainError, match="outside its bounds"):
        m.with_params(values)


@pytest.mark.parametrize(
    ("bounds", "error"),
    [
        ((float("nan"), 1.0), ValueDomainError),
        ((1.0, 0.0), ValueDomainError),
        ((0.0, 1.0, 2.0), ShapeError),
        ("ab", ConfigError),
    ],
)
def test_bad_bounds(bounds, error):
    with pytest.raises(error, match="bounds"):
        Parameter(0.5, bounds=bounds)


# -- Parameter arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "builtin"),
    [
        ({"value": float("nan")}, ValueDomainError, ValueError),
        ({"value": "abc"}, ConfigError, TypeError),
        ({"value": 1.0, "transform": "exp"}, ConfigError, TypeError),
        ({"value": 1.0, "distribution": 3.0}, ConfigError, TypeError),
        ({"value": 1.0, "metadata": 3}, ConfigError, TypeError),
        ({"value": 1.0, "scale": "x"}, ConfigError, TypeError),
        ({"value": 1.0, "scale": float("nan")}, ValueDomainError, ValueError),
        ({"value": 1.0, "n": 0}, ConfigError, ValueError),
        ({"value": [1.0, 2.0], "n": 3}, ShapeError, ValueError),
        ({"value": [1.0, 2.0], "name": ["a"]}, ShapeError, ValueError),
        ({"value": 1.0, "name": 3}, ConfigError, TypeError),
        ({"value": 1.0, "info": [1]}, ConfigError, TypeError),
        ({"value": 1.0, "bijector": Exp()}, ConfigError, ValueError),
        ({"value": 1.0, "latent_value": 0.0}, ConfigError, ValueError),
        ({"value": -1.0, "transform": Exp()}, ValueDomainError, ValueError),
    ],
)
def test_parameter_constructor(kwargs, error, builtin):
    with pytest.raises(error) as err:
        Parameter(**kwargs)
    assert isinstance(err.value, builtin)


def test_parameter_methods():
    p = Parameter([1.0, 2.0], name="w")
    with pytest.raises(ShapeError, match="float"):
        float(p)
    with pytest.raises(ShapeError, match="shape"):
        p.with_value([1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="transform") as err:
        p.transformed("exp")
    assert isinstance(err.value, TypeError)
    with pytest.raises(ConfigError, match="distribution"):
        p.with_distribution(1.0)


# -- modules, groups and operators -----------------------------------------------------------


def test_module_lookups():
    m = Pair(a=1.0, b=2.0)
    with pytest.raises(ConfigError, match="'a'") as err:
        m["aa"]
    assert isinstance(err.value, KeyError)
    with pytest.raises(ConfigError, match="did you mean"):
        m.with_params({"aa": 1.0})
    with pytest.raises(ShapeError, match="params"):
        m.with_params(jnp.zeros(3))
    with pytest.raises(ConfigError, match="info"):
        m.a.metadata["units"]


def test_groups_and_operators():
    with pytest.raises(ConfigError, match="duplicate"):
        px.ParameterGroup(["a", "a"])
    with pytest.raises(ConfigError, match="fn") as err:
        op.Binary(op.Constant(1.0), op.Constant(2.0), jnp.add)
    assert isinstance(err.value, TypeError)
    with pytest.raises(ConfigError, match="operator"):
        op.Map(jnp.negative, jnp.sqrt)
    with pytest.raises(ConfigError, match="no attribute 'los'") as err:
        op.Method("los")(Pair(a=1.0, b=1.0))
    assert isinstance(err.value, AttributeError)
    with pytest.raises(ValueDomainError):
        op.Sum([])
    with pytest.raises(ConfigError, match="axis"):
        op.Sum([op.Constant(1.0)], axis=0)
    with pytest.raises(ValueDomainError, match="percentage"):
        Pair(a=1.0, b=2.0).with_uniform_distributions(-0.1)
    with pytest.raises(ConfigError, match="bijector"):
        Pair(a=1.0, b=2.0).with_all_params_fixed(bijector=None)
    with pytest.raises(ConfigError, match="fix_others"):
        Pair(a=1.0, b=2.0).with_all_params_fixed(fix_others=False)
    with pytest.raises(ConfigError, match="include_fixed"):
        Pair(a=1.0, b=2.0).with_all_params_free(include_fixed=False)


def _vector_with_a_zero():
    class Vec(Module):
        w: Parameter

    return Vec(w=[0.0, 1.0, -4.0])


def test_with_uniform_distributions_gives_zero_elements_a_degenerate_uniform():
    # issue 33: as parax 0.4, element by element on a mixed vector.
    out = _vector_with_a_zero().with_uniform_distributions(0.1)
    np.testing.assert_allclose(out.w.distribution.low, [0.0, 0.9, -4.4], rtol=1e-6)
    np.testing.assert_allclose(out.w.distribution.high, [0.0, 1.1, -3.6], rtol=1e-6)
    np.testing.assert_allclose(out.w.value, [0.0, 1.0, -4.0])


def test_with_all_params_fixed_and_free_honour_their_keywords():
    # issue 34 item 4: the keywords were dropped without a word.
    m = Pair(a=1.0, b=2.0)
    fixed = m.with_all_params_fixed(fix_others=True, include_fixed=False, prefixes=True)
    assert fixed.param_names() == []
    assert fixed.param_names(include_fixed=True) == ["a", "b"]
    assert fixed.with_all_params_free(ignore_unknown=True).param_names() == ["a", "b"]


# -- covariance ------------------------------------------------------------------------------


X = jnp.linspace(0.0, 1.0, 20)
Y = 2.0 * X + 1.0


def _nll(m, data):
    return 0.5 * jnp.sum((data[1] - m(data[0])) ** 2)


def test_covariance_refuses_a_hessian_that_is_not_positive_definite():
    def flat_in_b(m, data):
        return 0.5 * jnp.sum((data[1] - m.a * data[0]) ** 2)  # b does not enter

    with pytest.raises(ValueDomainError, match="positive definite"):
        px.covariance(Pair(a=2.0, b=1.0), flat_in_b, (X, Y))
    with pytest.raises(ValueDomainError, match="not finite"):
        px.covariance(Pair(a=2.0, b=1.0), lambda m, d: jnp.nan * m.a, (X, Y))
    with pytest.raises(ShapeError, match="free parameter"):
        px.covariance(Pair(a=px.Fixed(2.0), b=px.Fixed(1.0)), _nll, (X, Y))


def test_covariance_off_the_optimum_warns_or_raises():
    off = Pair(a=3.0, b=1.0)
    with pytest.warns(UserWarning, match="not a minimum"):
        cov = px.covariance(off, _nll, (X, Y))
    assert np.all(np.isfinite(np.asarray(cov))) and np.all(np.diag(np.asarray(cov)) > 0)
    with pytest.raises(ValueDomainError, match="not a minimum"):
        px.covariance(off, _nll, (X, Y), at_optimum=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        px.covariance(Pair(a=2.0, b=1.0), _nll, (X, Y), at_optimum=True)


def test_summary_refuses_negative_or_nan_variances():
    m = Pair(a=2.0, b=1.0)
    with pytest.raises(ValueDomainError, match="variances"):
        m.summary(np.array([[-1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueDomainError, match="variances"):
        m.summary(np.array([[np.nan, 0.0], [0.0, 1.0]]))


# -- loading ---------------------------------------------------------------------------------


def _write(path, tree, arrays=None):
    save_artifact(path, kind="parax.tree", config={"tree": tree}, arrays=arrays or {})


def _array_node(key="a0", dtype="float32", shape=(2,)):
    return {"__t": "array", "k": key, "jax": True, "dtype": dtype, "shape": list(shape)}


@pytest.mark.parametrize(
    ("tree", "arrays", "match"),
    [
        (_array_node("a9"), {"a0": np.zeros(2, np.float32)}, "a9"),
        (_array_node(), {"a0": np.array(["x", "y"])}, "a0"),
        (_array_node(shape=(3,)), {"a0": np.zeros(2, np.float32)}, "a0"),
        (_array_node(dtype="float64"), {"a0": np.zeros(2, np.float32)}, "dtype"),
        ({"__t": "array", "k": "a0", "jax": True}, {"a0": np.zeros(2, np.float32)}, "dtype"),
        ({"__t": "module", "cls": "orrery.parax.parameter:Parameter"}, {}, "fields"),
        ({"__t": "module", "cls": "orrery.parax.parameter:Parameter", "fields": {}}, {}, "field"),
        ({"__t": "mystery"}, {}, "mystery"),
        ({"__t": "dict", "items": [[1]]}, {}, "pairs"),
        ({"__t": "slice", "v": ["a", 1, 2]}, {}, "slice"),
        ({"__t": "npscalar", "dtype": "object", "v": 1}, {}, "numeric"),
        ([1, 2], {}, "list"),
    ],
)
def test_loader_checks_every_entry(tmp_path, tree, arrays, match):
    _write(tmp_path / "t", tree, arrays)
    with pytest.raises(ArtifactError, match=match):
        px.load(tmp_path / "t")


def test_loader_refuses_a_missing_tree_and_values_outside_bounds(tmp_path):
    save_artifact(tmp_path / "none", kind="parax.tree", config={}, arrays={})
    with pytest.raises(ArtifactError, match="tree"):
        px.load(tmp_path / "none")
    px.save(tmp_path / "ok", Pair(a=px.Uniform(0.0, 1.0), b=0.0))
    back = px.load(tmp_path / "ok")
    assert float(back.a.value) == 0.5
    doc = json.loads((tmp_path / "ok" / "metadata.json").read_text())
    node = doc["config"]["tree"]["fields"]["a"]["fields"]["metadata"]["fields"]["bounds"]
    node_key = node["k"]
    arrays = dict(np.load(tmp_path / "ok" / "arrays.npz"))
    arrays[node_key] = np.array([0.8, 1.0], np.float32)  # the value 0.5 is now outside
    _write(tmp_path / "bad", doc["config"]["tree"], arrays)
    with pytest.raises(ArtifactError, match="outside its bounds"):
        px.load(tmp_path / "bad")


def test_float64_round_trip_keeps_or_warns(tmp_path):
    jax.config.update("jax_enable_x64", True)
    try:
        m = Pair(a=jnp.asarray(1.0, jnp.float64), b=jnp.asarray(2.0, jnp.float64))
        assert m.a.latent_value.dtype == jnp.float64
        px.save(tmp_path / "m64", m)
        back = px.load(tmp_path / "m64")
        assert back.a.latent_value.dtype == jnp.float64  # the saved dtype is kept
    finally:
        jax.config.update("jax_enable_x64", False)
    with pytest.warns(UserWarning, match="float64"):
        back = px.load(tmp_path / "m64")
    assert back.a.latent_value.dtype == jnp.float32


def test_a_distribution_of_the_wrong_size_is_refused():
    # Accepted silently before: a scalar distribution on a two-name group gave both
    # parameters the same draw; a 3-vector distribution on a scalar parameter or a
    # two-name group dropped or broadcast elements without a word.
    from distreqx.distributions import Normal as DNormal

    class Two(px.Module):
        a: px.Parameter
        b: px.Parameter

    m = Two(a=1.0, b=2.0)
    scalar = DNormal(jnp.asarray(0.0), jnp.asarray(1.0))
    three = DNormal(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ShapeError, match="distribution"):
        m.with_param_groups(px.ParameterGroup(["a", "b"], distribution=scalar))
    with pytest.raises(ShapeError, match="distribution"):
        m.with_param_groups(px.ParameterGroup(["a", "b"], distribution=three))
    with pytest.raises(ShapeError, match="distribution"):
        px.ParameterGroup(["a", "b"]).with_distribution(three)
    with pytest.raises(ShapeError, match="distribution"):
        px.Parameter(1.0, distribution=three)
    with pytest.raises(ShapeError, match="distribution"):
        px.Parameter([1.0, 2.0]).with_distribution(three)
    # What fits: one entry per name, a shared scalar distribution, or the parameter's shape.
    two = DNormal(jnp.zeros(2), jnp.ones(2))
    g = m.with_param_groups(px.ParameterGroup(["a", "b"], distribution=two))
    draw = g.sampled(jax.random.key(0)).named_param_values()
    assert float(draw["a"]) != float(draw["b"])
    assert px.Parameter([1.0, 2.0, 3.0], distribution=scalar).shape == (3,)
    assert px.Parameter([1.0, 2.0, 3.0], distribution=three).shape == (3,)
