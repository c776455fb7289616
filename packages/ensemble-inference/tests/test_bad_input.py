"""Bad input at the public boundary: a named OrreryError up front, or a warning naming members."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from orrery.ensemble import (
    EnsembleMAP,
    EnsembleVI,
    ensemble_init,
    ensemble_loss,
    ensemble_map,
    ensemble_predict,
    ensemble_step,
    ensemble_vi,
    predictive_summary,
)
from orrery.interface import ConfigError, ShapeError, ValueDomainError

KEY = jax.random.PRNGKey(3)


def _fit(linear, **kw):
    log_joint = kw.pop("log_joint", linear.log_joint)
    args = dict(ensemble_size=2, num_epochs=4, data=linear.data, seed=0, progress=False)
    args.update(kw)
    return ensemble_map(log_joint, linear.init, **args)


def _poisoned(a, index, value=np.nan):
    a = np.array(a)
    a[index] = value
    return a


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"prior_weight": np.nan}, ConfigError, "^prior_weight: expected a finite"),
        ({"prior_weight": -1.0}, ConfigError, "^prior_weight: .* >= 0, got -1.0$"),
        ({"prior_weight": "1"}, ConfigError, "^prior_weight"),
        ({"learning_rate": np.nan}, ConfigError, "^learning_rate: expected a finite"),
        ({"learning_rate": 0.0}, ConfigError, "^learning_rate: .* > 0, got 0.0$"),
        ({"learning_rate": "fast"}, ConfigError, "^learning_rate"),
        ({"progress": "yes"}, ConfigError, "^progress"),
        ({"ensemble_size": 0}, ConfigError, "^ensemble_size"),
        ({"num_epochs": 0}, ConfigError, "^num_epochs"),
        ({"data": (np.zeros((3, 2)),)}, ShapeError, "^data"),
    ],
)
def test_bad_options_raise_before_any_step(linear, kw, error, match):
    with pytest.raises(error, match=match) as info:
        _fit(linear, **kw)
    assert type(info.value) is error


def test_nonfinite_data_is_refused_naming_the_argument(linear):
    x, y = linear.data
    with pytest.raises(ValueDomainError, match=r"^y: expected finite values, got 1 .*\(3,\)"):
        _fit(linear, data=(x, _poisoned(y, 3)))
    with pytest.raises(ValueDomainError, match=r"^x: expected finite values.*\(5, 1\)"):
        _fit(linear, data=(_poisoned(x, (5, 1), np.inf), y))
    with pytest.raises(ValueDomainError, match=r"^x\['a'\]: expected finite"):
        runner = EnsembleMAP(linear.log_joint, linear.init, linear.adam, ensemble_size=2)
        runner.run(KEY, 2, {"a": _poisoned(x, 0)}, y)
    with pytest.raises(ValueDomainError, match=r"^y: expected finite values.*\(39,\)"):
        _fit(linear, data=(x, [*np.asarray(y).astype(str).tolist()[:-1], "nan"]))


def test_zero_prior_weight_as_numpy_scalar_or_0d_array_skips_the_prior(linear):
    x, y = linear.data

    def no_prior(params, x, y):  # the placeholder prior would poison the loss if it were used
        return linear.log_joint(params, x, y)[0], -jnp.inf

    ref = _fit(linear, log_joint=no_prior, prior_weight=0.0)
    assert np.isfinite(np.asarray(ref.losses)).all()
    res = _fit(linear, log_joint=no_prior, prior_weight=np.float32(0.0))
    assert res.skipped_steps.tolist() == [0, 0]
    np.testing.assert_array_equal(res.losses, ref.losses)
    for zero in (np.float32(0.0), np.array(0.0), jnp.asarray(0.0), 0):
        loss, _ = ensemble_loss(no_prior, prior_weight=zero)(
            {"w": jnp.zeros(2)}, jnp.asarray(x), jnp.asarray(y)
        )
        assert np.isfinite(float(loss))


def test_members_skipping_many_steps_are_named_in_a_warning(linear):
    def nan_for_member_1(params, x, y):
        ll, lp = linear.log_joint(params, x, y)
        return ll + jnp.where(params["id"] == 1.0, jnp.nan, 0.0), lp

    def init(key):
        return {"w": jax.random.normal(key, (2,)), "id": jnp.zeros(())}

    runner = EnsembleMAP(nan_for_member_1, init, linear.adam, ensemble_size=3)
    state = runner.init(KEY)
    state = state._replace(params={**state.params, "id": jnp.array([0.0, 1.0, 0.0])})
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[1\] had a non-finite .* 4 steps"):
        res = runner.run(KEY, 4, *linear.data, init_state=state)
    assert res.skipped_steps.tolist() == [0, 4, 0]


def test_log_joint_that_is_not_a_pair_is_a_config_error(linear):
    def one_number(params, x, y):
        return sum(linear.log_joint(params, x, y))

    def per_point(params, x, y):
        return -0.5 * (y - x @ params["w"]) ** 2, 0.0

    with pytest.raises(
        ConfigError, match=r"^log_joint: expected it to return a pair .*single array of shape \(\)"
    ):
        _fit(linear, log_joint=one_number)
    with pytest.raises(ConfigError, match=r"log_likelihood it returns must be a scalar.*\(40,\)"):
        _fit(linear, log_joint=per_point)
    with pytest.raises(ConfigError, match=r"got a tuple of length 3"):
        _fit(linear, log_joint=lambda p, x, y: (0.0, 0.0, 0.0))


def test_python_number_leaves_of_init_fn_are_named_in_a_warning(linear):
    def init(key):
        return {"w": jax.random.normal(key, (2,)), "bias": 0.5}

    def log_joint(params, x, y):
        return linear.log_joint(params, x, y)[0] + 0.0 * params["bias"], 0.0

    with pytest.warns(UserWarning, match=r"params\['bias'\] = 0\.5.*jnp\.asarray\(0\.0\)"):
        ensemble_map(
            log_joint, init, ensemble_size=2, num_epochs=2, data=linear.data, seed=1, progress=False
        )


def test_progress_auto_is_off_without_a_terminal_and_plain_lines_with_it(linear, capsys):
    _fit(linear, progress=None)  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""
    _fit(linear, num_epochs=40, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "compiling (2 members, 40 steps)" in lines[0]
    assert "compiled and ran the first" in lines[1] and "steps took" in lines[1]


def _model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(x @ w, s), obs=y)


def _guide_without_s(x, y=None):
    loc = numpyro.param("loc", jnp.zeros(2))
    numpyro.sample("w", dist.Normal(loc, 0.3).to_event(1))


def test_tempered_vi_names_a_latent_the_guide_does_not_cover(linear):
    with pytest.raises(ConfigError, match=r"latent site 's' is not in the guide"):
        ensemble_vi(
            _model,
            _guide_without_s,
            ensemble_size=2,
            num_epochs=2,
            data=linear.data,
            seed=0,
            kl_weight=0.5,
            progress=False,
        )


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"kl_weight": np.nan}, ConfigError, "^kl_weight"),
        ({"kl_weight": np.float32(-1)}, ConfigError, "^kl_weight"),
        ({"learning_rate": np.nan}, ConfigError, "^learning_rate"),
    ],
)
def test_vi_bad_options(linear, kw, error, match):
    with pytest.raises(error, match=match):
        ensemble_vi(
            _model, _guide_without_s, ensemble_size=2, num_epochs=2, data=linear.data, seed=0, **kw
        )


def test_vi_nonfinite_data_is_refused(linear):
    x, y = linear.data
    with pytest.raises(ValueDomainError, match=r"^y: expected finite"):
        ensemble_vi(
            _model,
            _guide_without_s,
            ensemble_size=2,
            num_epochs=2,
            data=(x, _poisoned(y, 0)),
            seed=0,
        )
    vi = EnsembleVI(_model, _guide_without_s, optax.adam(0.1), ensemble_size=2)
    with pytest.raises(ValueDomainError, match=r"^args\[0\]: expected finite"):
        vi.run(KEY, 2, _poisoned(x, 0), y)
    assert (
        EnsembleVI(_model, _guide_without_s, optax.adam(0.1), kl_weight=np.float32(0.5)).kl_weight
        == 0.5
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ensemble_loss(3), ConfigError, "^log_joint: expected a callable"),
        (
            lambda: ensemble_step(3, None, None, log_joint=lambda *a: a, optimizer=optax.sgd(1.0)),
            ConfigError,
            "^state: expected an EnsembleState",
        ),
        (
            lambda: ensemble_init(lambda k: {}, "adam", ensemble_size=2, seed=0),
            ConfigError,
            "^optimizer",
        ),
        (lambda: ensemble_predict({"a": jnp.zeros(2)}, 3, None), ConfigError, "^predict_fn"),
        (
            lambda: predictive_summary(jnp.zeros((2, 3)), quantiles="x"),
            ConfigError,
            "^quantiles",
        ),
    ],
)
def test_layer_one_and_summaries_refuse_bad_arguments(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert type(info.value) is error


def test_ensemble_init_accepts_an_int_seed():
    state = ensemble_init(
        lambda k: {"w": jax.random.normal(k, (2,))}, optax.sgd(0.1), ensemble_size=3, seed=7
    )
    assert state.params["w"].shape == (3, 2)


def test_vi_bad_options_raise_exactly_config_error(linear):
    with pytest.raises(ConfigError, match="^kl_weight") as info:
        ensemble_vi(
            _model,
            _guide_without_s,
            ensemble_size=2,
            num_epochs=2,
            data=linear.data,
            seed=0,
            kl_weight=-0.5,
        )
    assert type(info.value) is ConfigError


def test_ensemble_loss_refuses_a_nonfinite_prior_weight_as_a_setting(linear):
    with pytest.raises(ConfigError, match=r"^prior_weight: expected a finite number") as info:
        ensemble_loss(linear.log_joint, prior_weight=jnp.asarray(jnp.inf))
    assert type(info.value) is ConfigError


def test_learning_rate_accepts_any_real_scalar_and_a_schedule(linear):
    for rate in (np.float32(0.05), jnp.asarray(0.05, jnp.bfloat16), optax.constant_schedule(0.05)):
        res = _fit(linear, learning_rate=rate)
        assert np.isfinite(np.asarray(res.losses)).all()


def _predict(params, x):
    return x @ params["w"]


def test_ensemble_predict_refuses_nonfinite_inputs_naming_them(linear):
    x, _ = linear.data
    params = {"w": jnp.ones((3, 2))}
    assert ensemble_predict(params, _predict, x).shape == (3, len(x))
    with pytest.raises(ValueDomainError, match=r"^x_new: expected finite values, got 1 .*\(4, 0\)"):
        ensemble_predict(params, _predict, _poisoned(x, (4, 0)))
    with pytest.raises(ValueDomainError, match=r"^x_new\['a'\]: expected finite.*inf"):
        ensemble_predict(params, lambda p, x: _predict(p, x["a"]), {"a": _poisoned(x, 0, np.inf)})
    with pytest.raises(
        ValueDomainError, match=r"^x_new\[1\]\[0\]: expected finite values, got nan"
    ):
        ensemble_predict(
            params, lambda p, x: _predict(p, jnp.asarray(x)), [[1.0, 2.0], [np.nan, 0.0]]
        )


def test_ensemble_predict_under_jit_and_nan_members_follow_the_documented_contract(linear):
    x, _ = linear.data
    params = {"w": jnp.ones((3, 2)).at[1].set(jnp.nan)}
    # traced inputs are not checked: NaN propagates, as the docstring says
    out = jax.jit(lambda xn: ensemble_predict(params, _predict, xn))(_poisoned(x, 0))
    assert np.isnan(np.asarray(out)[:, 0]).all()
    preds = ensemble_predict(params, _predict, x)  # member 1 diverged: its predictions are NaN
    with pytest.warns(
        RuntimeWarning, match=r"^predictions: 40 non-finite value\(s\) .* member\(s\) \[1\]"
    ):
        summary = predictive_summary(preds)
    assert np.isnan(np.asarray(summary.mean)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictive_summary(preds[::2])


def test_single_steps_on_a_nan_batch_follow_the_documented_contract(linear):
    x, y = linear.data
    bad_y = _poisoned(y, 2)
    runner = EnsembleMAP(linear.log_joint, linear.init, linear.adam, ensemble_size=2)
    state = runner.init(KEY)
    new, losses = runner.update(state, x, bad_y)  # "skip": every member keeps its state
    assert np.isnan(np.asarray(losses)).all()
    np.testing.assert_array_equal(new.params["w"], state.params["w"])
    strict = EnsembleMAP(
        linear.log_joint, linear.init, linear.adam, ensemble_size=2, on_nonfinite="raise"
    )
    with pytest.raises(ValueDomainError, match=r"member 0 at step 0, member 1 at step 0"):
        strict.update(strict.init(KEY), x, bad_y)
