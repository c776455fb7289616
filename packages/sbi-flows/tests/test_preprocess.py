"""Observation preprocessing chosen from the data, log-space parameters, warnings (issue 35)."""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest

from orrery.interface import ConfigError, ValueDomainError
from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset
from orrery.sbi._fit_checks import (
    OVERFIT_GAP,
    overfit_gap,
    overfit_signs,
    warn_preparation_and_fit,
)
from orrery.sbi._posterior.recipe import recommended_config
from orrery.sbi._preprocess import (
    check_outliers,
    choose_block,
    forward,
    forward_uncertainties,
    inverse,
    prepare_dataset,
)
from orrery.sbi.spaces import ParameterSpace, choose_log_dims

TINY = dict(
    embedding_dim=4,
    hidden_dim=8,
    num_coupling_layers=1,
    num_epochs=1,
    batch_size=64,
    flow_family="affine",
    parameter_space="physical",
    stable_inverse_forward_max_abs_error_threshold=None,
    stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
    stable_cube_edge_hit_rate_threshold=None,
)


def _multi_scale(rng, n=600):
    """A log-normal parameter and positive / count / signed features across decades."""
    theta = np.exp(rng.normal(0.0, 0.6, size=(n, 1)))
    flux = theta * 10.0 ** rng.uniform(0, 3, size=(n, 1)) * np.exp(0.1 * rng.normal(size=(n, 1)))
    counts = rng.poisson(np.exp(rng.normal(2.0, 2.0, size=(n, 1)))).astype(float)
    noisy = 1e3 * rng.standard_cauchy(size=(n, 1))
    plain = theta + rng.normal(0.0, 0.3, size=(n, 1))
    const = np.full((n, 1), 7.0)
    return theta, np.hstack([flux, counts, noisy, plain, const])


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    theta, x = _multi_scale(rng)
    ds = SimulationDataset.from_arrays(theta, x, seed=1)
    post = ConditionalFlowPosterior(
        1, **TINY, observation_transform="auto", parameter_transform="auto"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.fit(ds)
    return post, ds, x, [str(w.message) for w in caught]


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("mode", ["auto", "robust", "asinh"])
def test_each_transform_round_trips(mode):
    rng = np.random.default_rng(1)
    _, x = _multi_scale(rng)
    entry, _ = choose_block(x, x.min(0), mode, "auxiliary")
    np.testing.assert_allclose(inverse(forward(x, entry), entry), x, rtol=1e-12, atol=1e-9)


def test_log_round_trips_and_refuses_non_positive():
    x = np.exp(np.random.default_rng(2).normal(size=(200, 3)))
    entry, notes = choose_block(x, x.min(0), "log", "auxiliary")
    assert entry["transform"] == ["log"] * 3 and notes["log"] == [0, 1, 2]
    np.testing.assert_allclose(inverse(forward(x, entry), entry), x, rtol=1e-12)
    with pytest.raises(ValueDomainError, match="feature 1 must be positive"):
        forward(np.array([1.0, -1.0, 1.0]), entry)
    bad = x.copy()
    bad[0, 2] = 0.0
    with pytest.raises(ValueDomainError, match="feature 2 has values <= 0"):
        choose_block(bad, bad.min(0), "log", "auxiliary")


def test_auto_choice_per_feature():
    rng = np.random.default_rng(3)
    _, x = _multi_scale(rng)
    entry, notes = choose_block(x, x.min(0), "auto", "auxiliary")
    assert entry["transform"] == ["log", "asinh", "asinh", "none", "none"]
    assert notes["constant"] == [4] and entry["value_scale"][4] == 1.0  # never / ~0
    z = forward(x, entry)
    assert np.all(np.isfinite(z)) and np.abs(np.median(z[:, :3], 0)).max() < 1e-9


def test_legacy_entry_is_mean_and_std():
    x = np.random.default_rng(4).normal(size=(50, 2))
    entry = {"modality": "auxiliary", "value_mean": [1.0, 2.0], "value_scale": [2.0, 4.0]}
    np.testing.assert_array_equal(forward(x, entry), (x - [1.0, 2.0]) / [2.0, 4.0])
    sigma = np.ones((50, 2))
    np.testing.assert_array_equal(forward_uncertainties(x, sigma, entry), sigma / [2.0, 4.0])


def test_uncertainties_follow_the_derivative():
    x = np.array([[10.0, 3.0]])
    entry = {
        "transform": ["log", "asinh"],
        "transform_scale": [1.0, 2.0],
        "value_mean": [0.0, 0.0],
        "value_scale": [1.0, 1.0],
    }
    eps = 1e-6
    numeric = (forward(x + eps, entry) - forward(x - eps, entry)) / (2 * eps)
    np.testing.assert_allclose(forward_uncertainties(x, np.ones_like(x), entry), numeric, rtol=1e-6)


def test_gaussian_data_keeps_mean_and_std():
    x = np.random.default_rng(5).normal(3.0, 2.0, size=(500, 4))
    entry, _ = choose_block(x, x.min(0), "auto", "auxiliary")
    assert entry["transform"] == ["none"] * 4
    np.testing.assert_allclose(entry["value_mean"], x.mean(0))
    np.testing.assert_allclose(entry["value_scale"], x.std(0))


# ----------------------------------------------------------------------------- in the posterior
def test_fit_records_transform_and_artifact_round_trips(fitted, tmp_path):
    post, ds, x, _ = fitted
    prep = post.preprocessing_metadata["auxiliary"]
    assert prep["transform"] == ["log", "asinh", "asinh", "none", "none"]
    assert ds.preprocessing_metadata["auxiliary"].get("transform") is None  # caller's untouched
    assert post.space.log_dims == (True,)
    loaded = ConditionalFlowPosterior.load(post.save(tmp_path / "p"))
    assert loaded.preprocessing_metadata == post.preprocessing_metadata
    assert loaded.space.log_dims == (True,) and loaded.observation_transform == "auto"
    obs = [ObservationBlock("auxiliary", x[0])]
    theta = np.array([[0.5], [1.0], [2.0]])
    np.testing.assert_array_equal(post.log_prob(obs, theta), loaded.log_prob(obs, theta))
    draws = loaded.sample_posterior(obs, 100, seed=0).samples
    assert np.all(draws > 0)


def test_batches_and_inference_prepare_alike(fitted):
    post, ds, x, _ = fitted
    view, _ = prepare_dataset(ds, "auto")
    batch = view.split_arrays("train")
    row = ds.train_indices[3]
    normalised = post._normalise_blocks([ObservationBlock("auxiliary", x[row])])
    np.testing.assert_array_equal(
        normalised["auxiliary"]["values"], batch.observations["auxiliary"]["values"][3]
    )


def test_log_prob_carries_the_jacobian(fitted):
    post, _, x, _ = fitted
    obs = [ObservationBlock("auxiliary", x[0])]
    grid = np.exp(np.linspace(-8.0, 8.0, 8001))[:, None]
    dens = np.exp(post.log_prob(obs, grid))
    assert np.trapezoid(dens[:, 0] if dens.ndim > 1 else dens, grid[:, 0]) == pytest.approx(
        1.0, abs=2e-3
    )
    assert post.log_prob(obs, np.array([-1.0])) == -np.inf
    assert post.log_prob(obs, np.array([0.0])) == -np.inf


def test_log_dims_closed_form_density():
    """A log-space coordinate: density over theta = density over log theta / theta."""
    from orrery.sbi._posterior import model as _model

    coords = _model._Coordinates("physical", np.zeros(1), np.ones(1), log_dims=(True,))
    theta = np.array([[0.5], [2.0], [7.0]], np.float32)
    z, log_det = coords.space_to_flow(theta)
    np.testing.assert_allclose(np.asarray(z)[:, 0], np.log(theta[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(log_det), -np.log(theta[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(coords.flow_to_space(z)), theta, rtol=1e-6)


def test_old_artifact_without_new_fields_loads(tmp_path):
    rng = np.random.default_rng(6)
    theta = rng.normal(size=(300, 1))
    ds = SimulationDataset.from_arrays(theta, theta + rng.normal(size=(300, 1)), seed=0)
    post = ConditionalFlowPosterior(1, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post.fit(ds)
    path = post.save(tmp_path / "p")
    doc = json.loads((path / "metadata.json").read_text())
    constructor = doc["config"]["estimator_config"]["constructor"]
    assert "transform" not in doc["config"]["preprocessing_metadata"]["auxiliary"]
    del constructor["observation_transform"], constructor["parameter_transform"]
    (path / "metadata.json").write_text(json.dumps(doc))
    loaded = ConditionalFlowPosterior.load(path)
    assert loaded.observation_transform == "none" and loaded.space.log_dims == ()
    np.testing.assert_array_equal(
        loaded.log_prob(theta[0], theta[:5]), post.log_prob(theta[0], theta[:5])
    )


def test_constructor_and_readers_refuse_bad_settings():
    with pytest.raises(ConfigError, match="observation_transform"):
        ConditionalFlowPosterior(1, observation_transform="sqrt")
    with pytest.raises(ConfigError, match="parameter_transform='log' needs"):
        ConditionalFlowPosterior(1, parameter_transform="log", parameter_space="cube")
    reader = types.SimpleNamespace(iter_batches=lambda *a, **k: iter(()))
    with pytest.raises(ConfigError, match="normalises its own batches"):
        prepare_dataset(reader, "log")
    assert prepare_dataset(reader, "auto") == (reader, [])


def test_recipe_turns_it_on_and_default_stays_off():
    cfg = recommended_config(2, 10_000)
    assert cfg["observation_transform"] == "auto" and cfg["parameter_transform"] == "auto"
    post = ConditionalFlowPosterior(2)
    assert post.observation_transform == "none" and post.parameter_transform == "none"


# ----------------------------------------------------------------------------- log dims choice
def test_choose_log_dims():
    rng = np.random.default_rng(7)
    lognormal = np.exp(rng.normal(0.0, 0.3, size=(2000, 1)))
    normal = rng.normal(size=(2000, 1))
    box = rng.uniform(0.5, 2.0, size=(2000, 1))
    theta = np.hstack([lognormal, normal, box])
    assert choose_log_dims(theta, "auto", bounded=False) == (True, False, False)
    assert choose_log_dims(theta, "auto", bounded=True) == ()
    assert choose_log_dims(theta, "none", bounded=False) == ()
    with pytest.raises(ValueDomainError, match="parameter 1"):
        choose_log_dims(theta, "log", bounded=False)
    space = ParameterSpace("physical", log_dims=(True, False, False))
    assert ParameterSpace.from_config(space.to_config()).log_dims == (True, False, False)
    assert "log_dims" not in ParameterSpace("physical").to_config()


# ----------------------------------------------------------------------------- warnings
def _batch(z):
    return types.SimpleNamespace(observations={"auxiliary": {"values": z}})


def test_outlier_warning_fires_and_stays_quiet():
    rng = np.random.default_rng(8)
    gauss = rng.normal(size=(5000, 4))
    assert check_outliers(None, _batch(gauss)) == []
    heavy = gauss.copy()
    heavy[:20, 1] = 50.0
    (message,) = check_outliers(None, _batch(heavy))
    assert "1 of 4 features" in message and "observation_transform='auto'" in message


def test_preparation_warns_with_numbers(fitted):
    *_, messages = fitted
    prep = [m for m in messages if "chosen from the training data" in m]
    assert len(prep) == 1
    assert "1 of 5 features log" in prep[0] and "2 of 5 features asinh" in prep[0]
    assert "[4] are constant" in prep[0]


def test_overfit_warning():
    def artifacts(train, val, kept=2):
        return types.SimpleNamespace(
            history={"train_loss": train, "val_loss": val},
            validation_metrics={"best_epoch": kept},
            trainer_metadata={"warnings": ["earlier"]},
        )

    quiet = artifacts([1.0, 0.5, 0.4], [1.0, 0.6, 0.7])
    assert overfit_gap(quiet.history, 2) == pytest.approx(0.1)
    assert warn_preparation_and_fit(quiet, None, _batch(np.zeros((10, 2))), []) == []
    # The Lotka-Volterra gap, with the held-out fit lost after the kept epoch.
    loud = artifacts([1.0, -5.24, -5.3, -5.6, -5.9, -6.0], [1.0, -4.30, -4.2, -3.9, -3.7, -3.6])
    with pytest.warns(UserWarning, match=r"over-fitting: at the kept epoch 2.*0.94 nats"):
        out = warn_preparation_and_fit(loud, None, _batch(np.zeros((10, 2))), [])
    assert len(out) == 1 and loud.trainer_metadata["warnings"] == ["earlier", *out]
    assert "stopped improving at epoch 2 of 6" in out[0] and "rose by 0.70 nats" in out[0]
    assert OVERFIT_GAP < 0.94
    # The same gap while the validation loss kept improving until late (slcp's 1.11 nats
    # at epoch 118 of 130): the kept state is the best held-out fit, no warning.
    improving = artifacts([1.0, -1.0, -3.0, -5.24, -5.3], [1.0, -2.0, -3.8, -4.30, -4.28], 4)
    assert overfit_gap(improving.history, 4) == pytest.approx(0.94)
    assert overfit_signs(improving.history, 4) == []
    assert warn_preparation_and_fit(improving, None, _batch(np.zeros((10, 2))), []) == []
    # The trainer's kept_train_loss (the validation loss function on the kept parameters
    # over as many training rows) replaces the epoch's running mean where recorded.
    measured = artifacts([1.0, 0.5, 0.4, 0.3, 0.2, 0.1], [1.0, 0.6, 0.7, 0.8, 0.9, 1.2])
    measured.validation_metrics["kept_train_loss"] = 0.1
    assert overfit_gap(measured.history, 2, 0.1) == pytest.approx(0.5)
    with pytest.warns(
        UserWarning, match=r"0.50 nats per simulation above the training loss \(0.100"
    ):
        warn_preparation_and_fit(measured, None, _batch(np.zeros((10, 2))), [])
    assert overfit_gap(measured.history, 2, float("nan")) == pytest.approx(0.1)


# (task, kept epoch, epochs run, kept-state gap, validation rise after the kept epoch):
# the recipe on the ten benchmark problems, 10^4 simulations (benchmarks/README.md,
# "Over-fitting, third session"), and over-fitting fits of 150-500 simulations.
_MEASURED = [
    ("gaussian_linear", 27, 39, -0.04, 0.001),
    ("two_moons", 93, 105, 0.10, 0.005),
    ("folded_5d", 52, 64, 0.47, 0.006),
    ("heavy_tailed_3d", 31, 43, 0.09, 0.002),
    ("slcp", 118, 130, 1.11, 0.068),
    ("gaussian_mixture", 100, 120, 0.01, 0.005),
    ("gaussian_linear_uniform", 48, 60, 0.37, 0.012),
    ("bernoulli_glm", 33, 53, 0.65, 0.036),
    ("bernoulli_glm_raw", 37, 49, 0.82, 0.022),
    ("slcp_distractors", 55, 75, 1.55, 0.186),
]
_OVER_FITTED = [
    ("affine, 27k weights, 150 simulations, 60 noise features", 1, 30, 1.68, 818.7),
    ("affine, width 256, 200 simulations", 12, 32, 1.97, 7.83),
    ("recipe, 200 simulations, 60 noise features", 1, 37, 1.19, 0.141),
    ("recipe, 500 simulations, 100 noise features", 1, 37, 0.78, 0.779),
]


def _history(kept, run, gap, rise):
    """A validation history with these facts (falling to the kept epoch, then rising)."""
    val = [1.0 - 0.01 * i for i in range(kept)]
    best = val[-1]
    val += [best + rise * (i + 1) / (run - kept) for i in range(run - kept)]
    train = [v - gap for v in val]
    return types.SimpleNamespace(
        history={"train_loss": train, "val_loss": val},
        validation_metrics={"best_epoch": kept, "kept_train_loss": best - gap},
        trainer_metadata={},
    )


@pytest.mark.parametrize("case", _MEASURED, ids=[c[0] for c in _MEASURED])
def test_overfit_warning_is_quiet_on_the_benchmark_problems(case):
    _, kept, run, gap, rise = case
    fit = _history(kept, run, gap, rise)
    assert warn_preparation_and_fit(fit, None, _batch(np.zeros((10, 2))), []) == []


@pytest.mark.parametrize("case", _OVER_FITTED, ids=[c[0] for c in _OVER_FITTED])
def test_overfit_warning_fires_on_over_fitted_fits(case):
    _, kept, run, gap, rise = case
    fit = _history(kept, run, gap, rise)
    with pytest.warns(UserWarning, match="over-fitting: at the kept"):
        (message,) = warn_preparation_and_fit(fit, None, _batch(np.zeros((10, 2))), [])
    assert f"{gap:.2f} nats per simulation" in message


def _benchmark_like(rng, n=3000):
    """Small versions of the existing benchmark problems' observations."""
    t = rng.normal(0, np.sqrt(0.1), size=(n, 10))
    yield t + rng.normal(0, np.sqrt(0.1), size=(n, 10))  # gaussian_linear
    t = rng.uniform(-1, 1, size=(n, 2))
    a = rng.uniform(-np.pi / 2, np.pi / 2, size=n)
    r = rng.normal(0.1, 0.01, size=n)
    moons = np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], -1)
    yield moons + np.stack([-np.abs(t.sum(1)), t[:, 1] - t[:, 0]], -1) / np.sqrt(2)  # two_moons
    t = rng.uniform(-2, 2, size=(n, 5))  # folded_5d
    yield np.hstack([np.abs(t) + rng.normal(0, 0.2, size=t.shape), rng.normal(size=(n, 15))])
    t = rng.standard_t(3.0, size=(n, 3))
    yield t + rng.normal(0, 0.5, size=t.shape)  # heavy_tailed_3d


def test_existing_benchmarks_need_no_transform_and_raise_no_warning():
    rng = np.random.default_rng(9)
    for x in _benchmark_like(rng):
        ds = SimulationDataset.from_arrays(np.zeros((len(x), 1)), x, seed=0)
        view, messages = prepare_dataset(ds, "auto")
        entry = view.preprocessing_metadata["auxiliary"]
        assert set(entry["transform"]) == {"none"} and messages == []
        np.testing.assert_allclose(
            entry["value_mean"], ds.preprocessing_metadata["auxiliary"]["value_mean"]
        )
        assert check_outliers(view, view.split_arrays("train")) == []


def test_streaming_reader_prepares_as_in_memory(tmp_path):
    rng = np.random.default_rng(10)
    theta, x = _multi_scale(rng, n=200)
    err = np.abs(x) * 0.1 + 0.5
    np.save(tmp_path / "theta.npy", theta)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "err.npy", err)
    streamed = SimulationDataset.from_npy(
        tmp_path / "theta.npy",
        {"auxiliary": tmp_path / "x.npy"},
        uncertainties={"auxiliary": tmp_path / "err.npy"},
    )
    mem = SimulationDataset.from_arrays(theta, x, uncertainties=err)
    s_view, s_msgs = prepare_dataset(streamed, "auto")
    m_view, m_msgs = prepare_dataset(mem, "auto")
    assert s_view.preprocessing_metadata == m_view.preprocessing_metadata and s_msgs == m_msgs
    a, b = s_view.read_rows("train", 0, 50), m_view.split_arrays("train")
    for kind in ("values", "uncertainties"):
        np.testing.assert_allclose(
            a.observations["auxiliary"][kind], b.observations["auxiliary"][kind][:50], rtol=1e-6
        )
    assert "transform" not in streamed.preprocessing_metadata["auxiliary"]  # caller's untouched


# ----------------------------------------------------------------------------- heavy tails
def _distractors(rng, n=4000):
    """slcp_distractors-like: an informative feature beside signed heavy-tailed noise."""
    theta = rng.normal(size=(n, 1))
    tails = 3.0 + 0.5 * rng.standard_t(1.2, size=(n, 3))  # centred away from 0
    return theta, np.hstack([theta + 0.3 * rng.normal(size=(n, 1)), tails])


def test_auto_centres_an_asinh_on_heavy_tails_and_the_outliers_go_quiet(tmp_path):
    rng = np.random.default_rng(11)
    theta, x = _distractors(rng)
    entry, notes = choose_block(x, x.min(0), "auto", "auxiliary")
    assert entry["transform"] == ["none", "asinh", "asinh", "asinh"] and notes["tails"] == [1, 2, 3]
    assert notes["asinh"] == [] and entry["transform_centre"][0] == 0.0
    np.testing.assert_allclose(entry["transform_centre"][1:], np.median(x[:, 1:], 0))
    np.testing.assert_allclose(inverse(forward(x, entry), entry), x, rtol=1e-12, atol=1e-9)
    eps = 1e-6  # the uncertainties follow the centred derivative
    numeric = (forward(x[:3] + eps, entry) - forward(x[:3] - eps, entry)) / (2 * eps)
    np.testing.assert_allclose(
        forward_uncertainties(x[:3], np.ones((3, 4)), entry), numeric, rtol=1e-5
    )
    ds = SimulationDataset.from_arrays(theta, x, seed=0)
    view, messages = prepare_dataset(ds, "auto")
    assert check_outliers(view, view.split_arrays("train")) == []
    assert "3 of 4 features asinh about their median (heavy tails" in messages[0]
    robust, _ = prepare_dataset(ds, "robust")  # the same data left untransformed: it speaks
    (loud,) = check_outliers(robust, robust.split_arrays("train"))
    assert "3 of 4 features have extreme outliers" in loud
    post = ConditionalFlowPosterior(1, **TINY, observation_transform="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.fit(ds)
    assert not [w for w in caught if "extreme outliers" in str(w.message)]
    loaded = ConditionalFlowPosterior.load(post.save(tmp_path / "p"))
    assert loaded.preprocessing_metadata == post.preprocessing_metadata
    obs = [ObservationBlock("auxiliary", x[0])]
    np.testing.assert_array_equal(post.log_prob(obs, theta[:3]), loaded.log_prob(obs, theta[:3]))


def test_outliers_the_preparation_leaves_still_warn():
    """A positive feature with a few collapsed values (Lotka-Volterra's 1e-10 floor)."""
    rng = np.random.default_rng(12)
    x = np.exp(rng.normal(0.0, 1.5, size=(5000, 2)))
    x[:30, 0] = 1e-10
    ds = SimulationDataset.from_arrays(np.zeros((5000, 1)), x, seed=0)
    view, _ = prepare_dataset(ds, "auto")
    assert view.preprocessing_metadata["auxiliary"]["transform"] == ["log", "log"]
    (message,) = check_outliers(view, view.split_arrays("train"))
    assert "1 of 2 features have extreme outliers" in message
