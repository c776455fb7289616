"""The linear-Gaussian start: its layer, its regression, and a posterior that starts exact."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.interface import ConfigError
from orrery.sbi import (
    ConditionalFlowPosterior,
    ObservationBlock,
    PersistentPosteriorEstimator,
    SimulationDataset,
)
from orrery.sbi._flows import linear_start as _linear_start
from orrery.sbi._flows.linear_start import ConditionalLinearGaussian, ridge_leave_one_out

NOISE = 0.5  # x = theta + N(0, NOISE^2), theta ~ N(0, I): posterior N(x / (1 + s2), s2 / (1 + s2))
TINY = dict(hidden_dim=16, embedding_dim=8, photometry_embedding_dim=8, num_coupling_layers=2)


def _linear_gaussian_data(n, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, dim))
    return theta, theta + NOISE * rng.normal(size=(n, dim))


def _exact_log_prob(x, theta):
    s2 = NOISE**2
    var = s2 / (1 + s2)
    r = theta - x / (1 + s2)
    return -0.5 * np.sum(r**2 / var + np.log(2 * np.pi * var), axis=-1)


def test_layer_closes_and_its_log_det_is_the_log_jacobian(check_bijection):
    layer = ConditionalLinearGaussian(3, 2)
    k = jr.split(jr.key(0), 4)
    values = (
        jr.normal(k[0], (3, 2)),
        jr.normal(k[1], (3,)),
        jr.normal(k[2], (3, 3)),
        0.3 * jr.normal(k[3], (3,)),
    )
    layer = eqx.tree_at(lambda m: (m.weight, m.bias, m.lower, m.log_diag), layer, values)
    x, c = jnp.array([0.4, -1.0, 2.0]), jnp.array([0.3, -0.7])
    check_bijection(layer, x, c, 1e-4, 1e-4, 1e-5)


def test_ridge_leave_one_out_residuals_equal_refits_without_each_row():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 4))
    y = x @ rng.normal(size=(4, 2)) + 0.3 + 0.5 * rng.normal(size=(25, 2))
    coef, intercept, loo, penalty = ridge_leave_one_out(x, y)
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        xk, yk = x[keep], y[keep]
        xm, ym = xk.mean(0), yk.mean(0)
        c = np.linalg.solve((xk - xm).T @ (xk - xm) + penalty * np.eye(4), (xk - xm).T @ (yk - ym))
        np.testing.assert_allclose(loo[i], y[i] - (ym + (x[i] - xm) @ c), rtol=1e-8, atol=1e-10)
    # constant features: no coefficients, the residuals are the centred targets
    coef0, intercept0, loo0, _ = ridge_leave_one_out(np.ones((25, 3)), y)
    np.testing.assert_array_equal(coef0, 0.0)
    np.testing.assert_allclose(intercept0, y.mean(0))
    np.testing.assert_allclose(loo0, (y - y.mean(0)) * 25 / 24)
    # noiseless data: the regression is recovered
    truth = rng.normal(size=(4, 2))
    coef, intercept, loo, _ = ridge_leave_one_out(x, x @ truth - 1.0)
    np.testing.assert_allclose(coef, truth, atol=1e-5)
    np.testing.assert_allclose(intercept, -1.0, atol=1e-5)


@pytest.fixture(scope="module")
def started():
    """A posterior fitted for one epoch at a negligible rate: it is its start."""
    theta, x = _linear_gaussian_data(10_000)
    ds = SimulationDataset.from_arrays(theta, x, seed=0)
    post = ConditionalFlowPosterior(
        3,
        parameter_space="physical",
        flow_family="spline_affine",
        encoder_linear_skip=True,
        linear_gaussian_start=True,
        num_epochs=1,
        learning_rate=1e-12,
        **TINY,
    )
    artifacts = post.fit(ds)
    return post, artifacts


def test_the_start_is_the_exact_posterior_of_a_linear_gaussian_problem(started):
    post, artifacts = started
    info = artifacts.trainer_metadata["linear_gaussian_start"]
    assert info["features"] == 3 and info["rows"] == 9000
    assert info["method"].startswith("ridge")
    np.testing.assert_allclose(info["explained_variance"], 1 / (1 + NOISE**2), atol=0.03)
    rng = np.random.default_rng(5)
    for x_obs in ([0.2, -0.5, 1.0], [2.0, 0.0, -1.5]):
        block = [ObservationBlock("auxiliary", np.array(x_obs))]
        theta = np.asarray(x_obs) / (1 + NOISE**2) + 0.4 * rng.normal(size=(20, 3))
        got = post.log_prob(block, theta)
        # regression from 9,000 rows: ~1% errors in the coefficients and the covariance
        np.testing.assert_allclose(got, _exact_log_prob(np.asarray(x_obs), theta), atol=0.12)
        draws = post.sample_posterior(block, 4000, seed=1).to_physical()
        np.testing.assert_allclose(draws.mean(0), np.asarray(x_obs) / (1 + NOISE**2), atol=0.04)
        np.testing.assert_allclose(draws.std(0), np.sqrt(0.2), rtol=0.06)


def test_a_started_posterior_saves_and_loads_exactly(started, tmp_path):
    post, _ = started
    block = [ObservationBlock("auxiliary", np.array([0.2, -0.5, 1.0]))]
    theta = np.array([[0.1, -0.3, 0.8], [0.0, 0.0, 0.0]])
    loaded = PersistentPosteriorEstimator.load(post.save(tmp_path / "p"))
    assert loaded.linear_gaussian_start
    np.testing.assert_array_equal(loaded.log_prob(block, theta), post.log_prob(block, theta))


def test_training_from_the_start_keeps_it_and_too_many_features_skip_it(monkeypatch):
    theta, x = _linear_gaussian_data(3000, seed=2)
    ds = SimulationDataset.from_arrays(theta, x, seed=0)
    val_theta = np.asarray(ds.split_arrays("validation").parameters)
    rows = [int(np.argmin(np.abs(theta - t).sum(1))) for t in val_theta]
    # the loss is in flow coordinates, theta z-scored by the training split's moments
    train_theta = np.asarray(ds.split_arrays("train").parameters)
    exact = -np.mean(_exact_log_prob(x[rows], theta[rows])) - np.log(train_theta.std(0)).sum()
    kwargs = dict(
        parameter_space="physical",
        encoder_linear_skip=True,
        linear_gaussian_start=True,
        num_epochs=4,
        batch_size=128,
        **TINY,
    )
    post = ConditionalFlowPosterior(3, **kwargs)
    history = post.fit(ds).history["val_loss"]
    assert max(history) < exact + 0.1  # every epoch is near the exact posterior's loss
    monkeypatch.setattr(_linear_start, "MAX_FEATURES", 2)
    with pytest.warns(UserWarning, match="still improving"):  # from a random start
        skipped = ConditionalFlowPosterior(3, **kwargs).fit(ds)
    assert skipped.trainer_metadata["linear_gaussian_start"]["method"].startswith("none")
    assert skipped.history["val_loss"][0] > history[0] + 0.3


def test_configurations_it_cannot_start_are_refused():
    with pytest.raises(ConfigError, match="encoder_linear_skip"):
        ConditionalFlowPosterior(3, linear_gaussian_start=True)
    with pytest.raises(ConfigError, match="embedding_dim"):
        ConditionalFlowPosterior(
            4, embedding_dim=2, encoder_linear_skip=True, linear_gaussian_start=True
        )
    with pytest.raises(ConfigError, match="neural_autoregressive"):
        ConditionalFlowPosterior(
            2,
            flow_family="neural_autoregressive",
            encoder_linear_skip=True,
            linear_gaussian_start=True,
        )


def test_a_flow_without_the_linear_layer_is_refused_by_name():
    theta, x = _linear_gaussian_data(400, seed=3)
    ds = SimulationDataset.from_arrays(theta, x, seed=0)
    post = ConditionalFlowPosterior(3, encoder_linear_skip=True, num_epochs=1, **TINY)
    post.fit(ds)
    rows = post._as_flow_batch(post._read_split(ds, "train"))
    with pytest.raises(TypeError, match="one linear-Gaussian layer"):
        _linear_start.linear_gaussian_start(post.model, rows.parameters, rows.observations)
