import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orrery.ensemble import ensemble_init, ensemble_predict, predictive_summary, to_draws
from orrery.interface import ConfigError, Draws, ShapeError


def test_predictive_summary_matches_numpy():
    preds = jax.random.normal(jax.random.PRNGKey(0), (9, 4, 2))
    s = predictive_summary(preds, quantiles=(0.1, 0.5, 0.9))
    p = np.asarray(preds)
    np.testing.assert_allclose(s.mean, p.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s.std, p.std(0), rtol=1e-5)
    np.testing.assert_allclose(s.quantiles, np.quantile(p, [0.1, 0.5, 0.9], axis=0), rtol=1e-5)
    assert s.quantiles.shape == (3, 4, 2)
    np.testing.assert_allclose(s.levels, [0.1, 0.5, 0.9])


def test_predictive_summary_validates():
    with pytest.raises(ConfigError, match="quantiles"):
        predictive_summary(jnp.ones((3, 2)), quantiles=(0.5, 1.5))
    with pytest.raises(ShapeError, match="predictions"):
        predictive_summary(jnp.asarray(1.0))


def test_to_draws_one_chain_per_member_with_path_names():
    params = {"w": jnp.arange(12.0).reshape(3, 2, 2), "b": jnp.arange(3.0)}
    draws = to_draws(params)
    assert isinstance(draws, Draws)
    assert sorted(draws.names) == ["b", "w"]
    assert draws.n_chains == 3 and draws.n_draws == 1
    np.testing.assert_array_equal(draws["w"][:, 0], params["w"])
    matrix, names = draws.to_matrix()
    assert "w[1,0]" in names and matrix.shape == (3, 5)
    renamed = to_draws(params, names=["bias", "weight"])
    assert sorted(renamed.names) == ["bias", "weight"]
    with pytest.raises(ShapeError, match="names"):
        to_draws(params, names=["only_one"])
    with pytest.raises(ConfigError, match="unique"):
        to_draws(params, names=["a", "a"])


def test_to_draws_of_an_equinox_model_skips_non_arrays():
    import optax

    state = ensemble_init(
        lambda k: eqx.nn.MLP(1, 1, 3, 1, key=k),
        optax.sgd(0.1),
        ensemble_size=2,
        seed=jax.random.PRNGKey(0),
    )
    draws = to_draws(state.params)
    assert "layers.0.weight" in draws.names and "layers.1.bias" in draws.names
    assert draws["layers.0.weight"].shape == (2, 1, 3, 1)
    preds = ensemble_predict(state.params, lambda m, x: jax.vmap(m)(x), jnp.ones((5, 1)))
    assert preds.shape == (2, 5, 1)
