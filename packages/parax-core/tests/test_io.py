"""save / load round trips and refusals."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distreqx.distributions import MultivariateNormalDiag

from orrery.interface import ArtifactError, save_artifact
from orrery.parax import (
    Module,
    Parameter,
    ParameterGroup,
    field,
    load,
    register_loadable,
    save,
)
from orrery.parax import parameters as pp
from orrery.parax.bijectors import Exp, Interval


@register_loadable
class Line(Module):
    slope: Parameter
    offset: Parameter
    cache: jax.Array = field(default=None, save=False)
    tag: str = field(default="line", static=True)


class Plain:
    pass


def _tree():
    line = Line(
        pp.Normal(2.0, 0.5, transform=Exp(), units="m/s"),
        Parameter([1.0, 2.0], bounds=(0.0, 3.0), transform=Interval(0.0, 3.0), name=["o1", "o2"]),
        cache=jnp.ones(3),
        tag="mine",
        name="line",
    )
    line = line.with_param_groups(
        ParameterGroup(["slope", "o1"], name="g", distribution=MultivariateNormalDiag(jnp.zeros(2)))
    )
    return {
        "model": line,
        "fixed": pp.Fixed(3.0, scale=2.0),
        "np": np.arange(4, dtype=np.int32),
        "list": [1, 2.5, None, "s", (True, 3)],
        "x64": np.float64(1.25),
    }


def _assert_same(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert type(x) is type(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        if hasattr(x, "dtype"):
            assert x.dtype == y.dtype


def test_round_trip_is_exact(tmp_path):
    tree = _tree()
    save(tmp_path / "tree", tree)
    back = load(tmp_path / "tree")
    assert back["model"].cache is None  # save=False fields come back as their default
    tree["model"] = tree["model"].with_fields(cache=None)
    _assert_same(back, tree)
    m = back["model"]
    assert m.tag == "mine" and m.name == "line" and m.param_names() == ["slope", "offset"]
    assert m.slope.info == {"units": "m/s"} and isinstance(m.slope.transform, Exp)
    assert m.param_groups(explicit_only=True)[0].name == "g"


def test_file_objects(tmp_path):
    buf = io.BytesIO()
    save(buf, _tree()["model"])
    buf.seek(0)
    back = load(buf)
    np.testing.assert_array_equal(back.flat_param_values(), _tree()["model"].flat_param_values())
    with pytest.raises(ArtifactError):
        load(io.BytesIO(b"not a zip"))


def test_functions_by_reference(tmp_path):
    save(tmp_path / "f", {"f": jnp.sum, "g": np.mean})
    back = load(tmp_path / "f")
    assert back["f"] is jnp.sum and back["g"] is np.mean


def test_refuses_unsupported_objects(tmp_path):
    with pytest.raises(ArtifactError, match="lambda"):
        save(tmp_path / "a", {"f": lambda x: x})
    with pytest.raises(ArtifactError, match="Plain"):
        save(tmp_path / "b", [Plain()])

    class Local(Module):
        x: Parameter

    with pytest.raises(ArtifactError, match="Local"):
        save(tmp_path / "c", Local(1.0))


class Unregistered(Module):
    x: Parameter


def test_unregistered_user_classes_are_refused_on_save_and_load(tmp_path):
    with pytest.raises(ArtifactError, match="register_loadable"):
        save(tmp_path / "a", Unregistered(1.0))
    node = {"__t": "module", "cls": f"{__name__}:Unregistered", "fields": {}}
    save_artifact(tmp_path / "b", kind="parax.tree", config={"tree": node}, arrays={})
    with pytest.raises(ArtifactError, match="allow-list"):
        load(tmp_path / "b")


def test_register_loadable_rejects_local_and_non_dataclass_objects():
    from orrery.interface import ConfigError

    with pytest.raises(ConfigError, match="obj"):
        register_loadable(lambda x: x)
    with pytest.raises(ConfigError, match="dataclass"):
        register_loadable(Plain)


def test_load_refuses_foreign_classes_and_functions(tmp_path):
    node = {"__t": "module", "cls": "collections:OrderedDict", "fields": {}}
    save_artifact(tmp_path / "x", kind="parax.tree", config={"tree": node}, arrays={})
    with pytest.raises(ArtifactError, match="collections:OrderedDict"):
        load(tmp_path / "x")
    node = {"__t": "func", "ref": "os:system"}
    save_artifact(tmp_path / "y", kind="parax.tree", config={"tree": node}, arrays={})
    with pytest.raises(ArtifactError, match="os:system"):
        load(tmp_path / "y")
    save_artifact(tmp_path / "z", kind="other", config={}, arrays={})
    with pytest.raises(ArtifactError):
        load(tmp_path / "z")
