"""parax 0.11-style models with orrery.interface: Draws and save/load artifacts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax as px04
import orrery.parax.v011 as parax
from orrery.interface import ArtifactError, ConfigError, Draws
from orrery.parax.v011 import constraints as C
from orrery.parax.v011 import distributions as D
from orrery.parax.v011.interop import draws_from


@px04.register_loadable
class Line(eqx.Module):
    slope: object
    offset: object
    noise: object

    @parax.unwrap_self
    def __call__(self, x):
        return self.slope * x + self.offset


@px04.register_loadable
class Old(px04.Module):
    slope: px04.Parameter


def _line():
    return Line(
        slope=parax.Random(D.Normal(jnp.array(2.0), jnp.array(0.5))),
        offset=parax.Constrained(C.Interval(-1.0, 3.0), value=1.0),
        noise=parax.Fixed(parax.Derived(jnp.exp, jnp.array(-1.0))),
    )


def test_draws_of_a_011_model():
    draws = draws_from(_line(), jax.random.key(0), num_samples=400)
    assert isinstance(draws, Draws) and draws.names == ["slope"]
    s = np.asarray(draws["slope"])
    assert s.shape == (1, 400)
    assert abs(s.mean() - 2.0) < 0.1 and abs(s.std() - 0.5) < 0.08
    with pytest.raises(ConfigError, match="no random"):
        draws_from({"a": parax.Real(1.0)}, jax.random.key(0))


def test_save_and_load_a_011_model(tmp_path):
    model = _line()
    px04.save(tmp_path / "line", model)
    back = px04.load(tmp_path / "line")
    assert type(back.slope) is parax.Random and type(back.noise) is parax.Fixed
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(back(x), model(x), rtol=1e-6)
    np.testing.assert_allclose(back.offset.bounds, [-1.0, 3.0])
    assert float(back.noise.value) == pytest.approx(np.exp(-1.0))
    grads = eqx.filter_grad(lambda m: m.noise.value)(back)
    assert float(grads.noise.raw_value.raw_value) == 0.0  # Fixed still stops the gradient


def test_a_tie_with_a_lambda_is_refused_not_pickled(tmp_path):
    tied = parax.Tie({"a": jnp.array(1.0), "b": jnp.array(0.0)}, lambda t: t["b"], lambda t: t["a"])
    with pytest.raises(ArtifactError, match="function"):
        px04.save(tmp_path / "tied", tied)


def test_04_module_and_011_model_share_draws_and_artifacts(tmp_path):
    old = Old(slope=px04.Normal(2.0, 0.5))
    both = [
        old.to_draws(jax.random.key(1), num_samples=50),
        draws_from(_line(), jax.random.key(1), 50),
    ]
    assert all(isinstance(d, Draws) and d.names == ["slope"] for d in both)
    px04.save(tmp_path / "old", old)
    assert px04.load(tmp_path / "old").param_names() == ["slope"]
