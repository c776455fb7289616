import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from orrery.ensemble import (
    EnsembleMAP,
    EnsembleResult,
    EnsembleState,
    ensemble_map,
    ensemble_predict,
)
from orrery.ensemble.map import batch_indices
from orrery.interface import ConfigError, ShapeError, ValueDomainError

KEY = jax.random.PRNGKey(3)
E, T, B = 4, 30, 8


@pytest.fixture(scope="module")
def runner(linear):
    return EnsembleMAP(linear.log_joint, linear.init, linear.adam, ensemble_size=E)


@pytest.fixture(scope="module")
def full_run(runner, linear):
    x, y = linear.data
    return runner.run(KEY, T, x, y, batch_size=B)


def test_run_shapes_and_bookkeeping(full_run):
    params, losses = full_run
    assert params["w"].shape == (E, 2) and losses.shape == (E, T)
    assert full_run.skipped_steps.tolist() == [0] * E
    assert full_run.num_steps == T and isinstance(full_run.state, EnsembleState)
    assert bool(jnp.all(losses[:, -1] < losses[:, 0]))


def test_manual_update_loop_equals_run(runner, full_run, linear):
    x, y = linear.data
    n = y.shape[0]
    init_key, batch_key = jax.random.split(KEY)
    state = runner.init(init_key)
    history = []
    for t in range(T):
        idx = batch_indices(batch_key, jnp.asarray(t), n, B)
        state, losses = runner.update(state, x[idx], y[idx], scale=n / B)
        history.append(losses)
    np.testing.assert_allclose(jnp.stack(history, 1), full_run.losses, rtol=1e-5)
    np.testing.assert_allclose(state.params["w"], full_run.params["w"], rtol=1e-5, atol=1e-6)


def test_minibatch_loss_uses_scale_n_over_batch(full_run, runner, linear):
    x, y = linear.data
    n = y.shape[0]
    init_key, batch_key = jax.random.split(KEY)
    params = runner.init(init_key).params
    idx = batch_indices(batch_key, jnp.asarray(0), n, B)
    ll, lp = jax.vmap(linear.log_joint, in_axes=(0, None, None))(params, x[idx], y[idx])
    np.testing.assert_allclose(full_run.losses[:, 0], -(n / B) * ll - lp, rtol=1e-5)


def test_batch_larger_than_data_is_full_batch_with_unit_scale(runner, linear):
    x, y = linear.data
    big = runner.run(KEY, 5, x, y, batch_size=10_000)
    full = runner.run(KEY, 5, x, y)
    np.testing.assert_array_equal(big.losses, full.losses)
    params = runner.init(jax.random.split(KEY)[0]).params
    ll, lp = jax.vmap(linear.log_joint, in_axes=(0, None, None))(params, x, y)
    np.testing.assert_allclose(full.losses[:, 0], -ll - lp, rtol=1e-5)


def test_split_run_equals_one_run(runner, full_run, linear):
    x, y = linear.data
    first = runner.run(KEY, T // 2, x, y, batch_size=B)
    second = runner.run(KEY, T - T // 2, x, y, batch_size=B, init_state=first)
    assert second.num_steps == T
    np.testing.assert_allclose(
        jnp.concatenate([first.losses, second.losses], 1), full_run.losses, rtol=1e-6
    )
    np.testing.assert_allclose(second.params["w"], full_run.params["w"], rtol=1e-6)


def test_progress_bar_run_equals_single_scan(runner, full_run, linear, capsys):
    x, y = linear.data
    chunked = runner.run(KEY, T, x, y, batch_size=B, progress=True)
    np.testing.assert_allclose(chunked.losses, full_run.losses, rtol=1e-6)
    assert "EnsembleMAP" in capsys.readouterr().err


def _flagged_log_joint(params, x, y):
    """Linear regression, NaN for a flagged member whenever the batch starts with y > 0."""
    resid = y - x @ params["w"]
    bad = (params["flag"] > 0) & (y[0] > 0)
    # NaN in the loss and in the gradient of w (0 * sum(w) elsewhere keeps others exact)
    loglik = -0.5 * jnp.sum(resid**2) / 0.25 + jnp.where(bad, jnp.nan, 0.0) * jnp.sum(params["w"])
    return loglik, -0.5 * jnp.sum(params["w"] ** 2)


def _flagged_init(key):
    return {"w": jax.random.normal(key, (2,)), "flag": jnp.zeros(())}


def _flag_member(state, member):
    params = dict(state.params)
    params["flag"] = params["flag"].at[member].set(1.0)
    return state._replace(params=params)


def _keep(tree, members):
    return jax.tree.map(lambda a: a[jnp.asarray(members)], tree)


def test_nonfinite_member_is_skipped_and_others_are_untouched(linear):
    x, y = linear.data
    opt = optax.adam(0.05)
    big = EnsembleMAP(_flagged_log_joint, _flagged_init, opt, ensemble_size=4)
    small = EnsembleMAP(_flagged_log_joint, _flagged_init, opt, ensemble_size=3)
    state = _flag_member(big.init(jax.random.PRNGKey(5)), 2)
    res = big.run(KEY, T, x, y, batch_size=B, init_state=state)
    ref = small.run(KEY, T, x, y, batch_size=B, init_state=_keep(state, [0, 1, 3]))

    batch_key = jax.random.split(KEY)[1]
    expected_bad = sum(
        int(y[batch_indices(batch_key, jnp.asarray(t), y.shape[0], B)][0] > 0) for t in range(T)
    )
    assert 0 < expected_bad < T
    assert res.skipped_steps.tolist() == [0, 0, expected_bad, 0]
    assert bool(jnp.all(jnp.isfinite(res.params["w"])))
    np.testing.assert_allclose(_keep(res.params, [0, 1, 3])["w"], ref.params["w"], rtol=1e-6)
    np.testing.assert_allclose(res.losses[jnp.array([0, 1, 3])], ref.losses, rtol=1e-6)
    assert int(jnp.isnan(res.losses[2]).sum()) == expected_bad

    # "ignore" applies the poisoned steps: the member is lost, the others are not
    ignore = EnsembleMAP(
        _flagged_log_joint, _flagged_init, opt, ensemble_size=4, on_nonfinite="ignore"
    )
    res_ignore = ignore.run(KEY, T, x, y, batch_size=B, init_state=state)
    assert not bool(jnp.all(jnp.isfinite(res_ignore.params["w"][2])))
    np.testing.assert_allclose(
        res_ignore.params["w"][jnp.array([0, 1, 3])], ref.params["w"], rtol=1e-6
    )


def test_nan_parameters_member_is_skipped_for_every_step(runner, linear):
    x, y = linear.data
    state = runner.init(jax.random.PRNGKey(7))
    state = state._replace(params={"w": state.params["w"].at[1].set(jnp.nan)})
    res = runner.run(KEY, 6, x, y, init_state=state)
    assert res.skipped_steps.tolist() == [0, 6, 0, 0]
    assert bool(jnp.all(jnp.isfinite(res.params["w"][jnp.array([0, 2, 3])])))


def test_skip_keeps_member_whose_update_overflows():
    # finite loss and gradient, but lr * gradient overflows float32: the update is inf
    def log_joint(params, x, y):
        return -1e30 * params["w"], 0.0  # a constant, finite gradient of 1e30

    runner = EnsembleMAP(
        log_joint,
        lambda k: {"w": jnp.zeros(())},
        optax.sgd(1e10),
        ensemble_size=2,
        prior_weight=0.0,
    )
    state = runner.init(0)
    state = state._replace(params={"w": jnp.array([0.0, 1.0])})
    x, y = jnp.zeros((3, 1)), jnp.zeros(3)
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[0, 1\]"):
        res = runner.run(KEY, 5, x, y, init_state=state)
    assert res.skipped_steps.tolist() == [5, 5]
    assert res.params["w"].tolist() == [0.0, 1.0]  # both kept their last finite state


def test_raise_mode_names_member_and_step(linear):
    x, y = linear.data
    strict = EnsembleMAP(
        _flagged_log_joint, _flagged_init, optax.adam(0.05), ensemble_size=2, on_nonfinite="raise"
    )
    state = _flag_member(strict.init(jax.random.PRNGKey(5)), 1)
    with pytest.raises(ValueDomainError, match="member 1 at step"):
        strict.run(KEY, 10, x, y, batch_size=B, init_state=state)
    order = jnp.argsort(-y)  # a batch whose first target is positive poisons member 1
    with pytest.raises(ValueDomainError, match="member 1"):
        strict.update(state, x[order], y[order])


def test_continue_from_bare_state_and_bad_state(runner, linear):
    x, y = linear.data
    res = runner.run(KEY, 3, x, y)
    again = runner.run(KEY, 3, x, y, init_state=res.state)
    assert again.num_steps == 3
    with pytest.raises(ConfigError, match="init_state"):
        runner.run(KEY, 3, x, y, init_state={"w": 1})
    with pytest.raises(ConfigError, match="init_state"):
        runner.run(KEY, 3, x, y, init_state=_keep(res.state, [0, 1]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_epochs": 0}, ConfigError, "num_epochs"),
        ({"batch_size": 0}, ConfigError, "batch_size"),
        ({"y": jnp.zeros(3)}, ShapeError, "x: expected 3 rows"),
        ({"seed": -1}, ConfigError, "seed"),
    ],
)
def test_run_validates_arguments(runner, linear, kwargs, error, match):
    x, y = linear.data
    args = {"seed": KEY, "num_epochs": 2, "x": x, "y": y, **kwargs}
    with pytest.raises(error, match=match):
        runner.run(
            args["seed"],
            args["num_epochs"],
            args["x"],
            args["y"],
            batch_size=kwargs.get("batch_size"),
        )


def test_constructor_validates(linear):
    with pytest.raises(ConfigError, match="ensemble_size"):
        EnsembleMAP(linear.log_joint, linear.init, linear.adam, ensemble_size=0)
    with pytest.raises(ConfigError, match="on_nonfinite"):
        EnsembleMAP(linear.log_joint, linear.init, linear.adam, on_nonfinite="skp")
    with pytest.raises(ConfigError, match="optimizer"):
        EnsembleMAP(linear.log_joint, linear.init, "adam")


def _closed_form(x, y, sigma, tau, prior):
    precision = x.T @ x / sigma**2 + (np.eye(2) / tau**2 if prior else 0)
    return np.linalg.solve(precision, x.T @ y / sigma**2)


@pytest.mark.parametrize("prior_weight", [0.0, 1.0])
def test_mle_and_map_match_closed_form(x64, linear, prior_weight):
    x, y = (np.asarray(a, np.float64) for a in linear.data)
    # tau small enough that MAP and MLE differ visibly
    tau = 0.3

    def log_joint(params, xb, yb):
        resid = yb - xb @ params["w"]
        return -0.5 * jnp.sum(resid**2) / linear.sigma**2, -0.5 * jnp.sum(params["w"] ** 2) / tau**2

    hessian = x.T @ x / linear.sigma**2 + prior_weight * np.eye(2) / tau**2
    lr = 1.0 / np.linalg.eigvalsh(hessian).max()
    params, _ = ensemble_map(
        log_joint,
        lambda k: {"w": jax.random.normal(k, (2,), jnp.float64)},
        ensemble_size=3,
        num_epochs=400,
        data=(x, y),
        seed=0,
        optimizer=optax.sgd(lr),
        prior_weight=prior_weight,
    )
    assert params["w"].dtype == jnp.float64
    expected = _closed_form(x, y, linear.sigma, tau, prior=prior_weight == 1.0)
    np.testing.assert_allclose(
        params["w"], np.broadcast_to(expected, (3, 2)), rtol=1e-9, atol=1e-10
    )
    other = _closed_form(x, y, linear.sigma, tau, prior=prior_weight != 1.0)
    assert np.abs(expected - other).max() > 0.05


def test_ensemble_map_returns_unpackable_result_and_predicts(linear):
    x, y = linear.data
    result = ensemble_map(
        linear.log_joint,
        linear.init,
        ensemble_size=E,
        num_epochs=T,
        data=(x, y),
        seed=KEY,
        batch_size=B,
        optimizer=linear.adam,
    )
    assert isinstance(result, EnsembleResult)
    params, _ = result
    preds = ensemble_predict(params, lambda p, xn: xn @ p["w"], x)
    assert preds.shape == (E, y.shape[0])
    np.testing.assert_allclose(preds[1], x @ params["w"][1], rtol=1e-6)
    with pytest.raises(ShapeError, match="data"):
        ensemble_map(linear.log_joint, linear.init, ensemble_size=2, num_epochs=2, data=x, seed=0)
