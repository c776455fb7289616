"""Bad input at the sbi-flows boundaries: each case raises its exact error class (issue 16)."""

import copy
import json
import shutil
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orrery.interface import (
    ArtifactError,
    ConfigError,
    ShapeError,
    ValueDomainError,
    load_artifact,
    save_artifact,
)
from orrery.sbi import (
    ConditionalFlowPosterior,
    EncodedObservation,
    ObservationBlock,
    ParameterSpace,
    PersistentPosteriorEstimator,
    PosteriorBatch,
)
from orrery.sbi.persistence import ARTIFACT_KIND
from orrery.sbi.training import SBITrainer, load_latest_checkpoint

TINY = dict(embedding_dim=8, hidden_dim=16, num_coupling_layers=2, conditioner_depth=1)
METADATA = {
    "parameter_names": ["a", "b"],
    "parameter_space": ParameterSpace("cube", [0.0, -1.0], [1.0, 1.0]).to_config(),
    "flow_shift": [0.0, 0.0],
    "flow_scale": [1.0, 1.0],
    "observation_schema": {
        "phot": {"modality": "photometry", "size": 3, "has_uncertainties": False},
        "aux": {"modality": "auxiliary", "size": 2, "has_uncertainties": False},
    },
    "preprocessing_metadata": {
        "phot": {"modality": "photometry", "value_mean": [0, 1, 2], "value_scale": [1, 2, 3]},
        "aux": {"modality": "auxiliary", "value_mean": [0, 0], "value_scale": [1, 1]},
    },
    "dataset_manifest": None,
    "dataset_fingerprint": None,
}
ENC = EncodedObservation(np.zeros(8, np.float32))


@pytest.fixture(scope="module")
def posterior():
    post = ConditionalFlowPosterior(
        2, **TINY, parameter_space="cube", checkpoint_directory="/abs/where/it/trained"
    )
    post.hydrate_loaded_metadata(METADATA)
    return post


@pytest.fixture(scope="module")
def saved(posterior, tmp_path_factory):
    return load_artifact(posterior.save(tmp_path_factory.mktemp("ok") / "post"))


def tampered(saved, tmp_path, edit_config=None, arrays=None):
    config = copy.deepcopy(saved.config)
    if edit_config:
        edit_config(config)
    return save_artifact(
        tmp_path / "tampered",
        kind=ARTIFACT_KIND,
        config=config,
        arrays=saved.arrays if arrays is None else arrays,
    )


# ---------------------------------------------------------------- observations
def test_a_raw_vector_is_never_taken_as_an_embedding(posterior):
    with pytest.raises(ConfigError, match="never taken as an embedding"):
        posterior.sample_posterior(np.zeros(8), 3)  # the size of an embedding
    with pytest.raises(ConfigError, match="never taken as an embedding"):
        posterior.log_prob(np.zeros(5), np.full(2, 0.5))
    with pytest.raises(ShapeError, match="embedding of shape"):
        posterior.log_prob(EncodedObservation(np.zeros(5)), np.full(2, 0.5))
    with pytest.raises(ConfigError, match="missing"):
        posterior.sample_posterior([ObservationBlock("photometry", np.zeros(3), name="phot")], 3)
    with pytest.raises(ShapeError, match="expected 2 values"):
        posterior.encode_observation(
            [
                ObservationBlock("photometry", np.zeros(3), name="phot"),
                ObservationBlock("auxiliary", np.zeros(4), name="aux"),
            ]
        )


def test_cube_log_prob_outside_the_cube_is_minus_inf_not_nan(posterior):
    lp = posterior.log_prob(ENC, np.array([[1.5, 0.5], [-0.2, 0.5], [0.5, 0.5]]))
    assert lp[0] == -np.inf and lp[1] == -np.inf and np.isfinite(lp[2])
    with pytest.raises(ShapeError, match="parameters"):
        posterior.log_prob(ENC, np.zeros((2, 3)))


def test_log_prob_of_a_nan_parameter_is_nan_never_minus_inf(posterior):
    # Was -inf (taken for a point outside the support); the density is undefined there.
    theta = np.array([[np.nan, 0.5], [0.5, 0.5], [np.inf, 0.5], [0.2, -np.inf]])
    lp = posterior.log_prob(ENC, theta)
    assert np.isnan(lp[0]) and np.isfinite(lp[1]) and lp[2] == lp[3] == -np.inf
    assert np.isnan(posterior.log_prob(ENC, theta[0]))
    batch = posterior.log_prob_batch([ENC], theta[None])  # physical units
    assert np.isnan(batch[0, 0]) and np.isfinite(batch[0, 1]) and np.all(batch[0, 2:] == -np.inf)


# ---------------------------------------------------------------- float64
def test_fit_and_sample_under_jax_enable_x64(unit_box_data):
    ds = unit_box_data(128)
    post = ConditionalFlowPosterior(2, **TINY, num_epochs=1, batch_size=64)
    with jax.enable_x64(True):
        post.fit(ds)
        draws = post.sample_posterior([ObservationBlock("auxiliary", np.full(2, 0.5))], 4)
    assert draws.samples.dtype == np.float32 and np.all(np.isfinite(draws.samples))


# ---------------------------------------------------------------- saved posteriors
def test_saved_posterior_records_no_checkpoint_path(saved):
    text = json.dumps(saved.config)
    assert "/abs/where/it/trained" not in text
    assert saved.config["estimator_config"]["constructor"]["checkpoint_directory"] is None


def _drop(*keys):
    def edit(config):
        node = config
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return edit


def _set(value, *keys):
    def edit(config):
        node = config
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_drop("preprocessing_metadata", "aux"), r"preprocessing_metadata\['aux'\].*missing"),
        (_drop("preprocessing_metadata"), "'preprocessing_metadata' is missing"),
        (_drop("parameter_names"), "'parameter_names' is missing"),
        (_drop("flow_scale"), "'flow_scale' is missing"),
        (_set([1.0, 0.0], "flow_scale"), "positive"),
        (_set(["a"], "parameter_names"), "2 strings"),
        (_set("x", "observation_schema", "aux", "size"), "wrong type"),
        (_set([0.0], "preprocessing_metadata", "phot", "value_mean"), "list of 3"),
        (_drop("estimator_config", "constructor", "hidden_dim"), "hidden_dim.*missing"),
        (_set(2.5, "estimator_config", "constructor", "parameter_dim"), "parameter_dim"),
        (_set([0.0, 1.0], "parameter_space", "upper"), "exceed"),
        (_set("spline!", "estimator_config", "constructor", "flow_family"), "flow_family"),
        (_set(1 << 40, "estimator_config", "constructor", "hidden_dim"), "bytes"),
        (_drop("estimator_class"), "'estimator_class' is missing"),
    ],
)
def test_loader_refuses_incomplete_or_inconsistent_metadata(saved, tmp_path, edit, match):
    path = tampered(saved, tmp_path, edit)
    with pytest.raises(ArtifactError, match=match):
        PersistentPosteriorEstimator.load(path)


def test_loader_refuses_missing_or_mistyped_weights(saved, tmp_path):
    state = saved.arrays["backend_state"]
    for arrays, match in [
        ({}, "'backend_state' is missing"),
        ({"backend_state": state.astype(np.float32)}, "dtype"),
        ({"backend_state": state.reshape(-1, 4) if state.size % 4 == 0 else state[None]}, "shape"),
        ({"backend_state": state[:200]}, "bytes"),
        ({"backend_state": state[:-100]}, "backend state does not match"),
    ]:
        path = tampered(saved, tmp_path, arrays=arrays)
        with pytest.raises(ArtifactError, match=match):
            PersistentPosteriorEstimator.load(path)


def test_loading_a_good_artifact_still_works(saved, posterior):
    loaded = PersistentPosteriorEstimator.load(saved.path)
    theta = np.array([[0.3, 0.2]])
    np.testing.assert_allclose(loaded.log_prob(ENC, theta), posterior.log_prob(ENC, theta))


# ---------------------------------------------------------------- x64 both ways (issue 32)
def test_a_posterior_saved_without_x64_loads_under_x64_and_back(posterior, saved, tmp_path):
    # Was: ArtifactError "holds N bytes; the configured model needs M" under x64.
    want = posterior.sample_posterior(ENC, 6, seed=3).samples
    with jax.enable_x64(True):
        loaded = PersistentPosteriorEstimator.load(saved.path)
        got = loaded.sample_posterior(ENC, 6, seed=3).samples
        # A posterior rebuilt and saved under x64 is the same float32 model ...
        again = ConditionalFlowPosterior(2, **TINY, parameter_space="cube")
        again.hydrate_loaded_metadata(METADATA)
        path = again.save(tmp_path / "x64")
    np.testing.assert_array_equal(got, want)
    assert all(
        leaf.dtype == np.float32
        for leaf in jax.tree.leaves(eqx.filter(loaded.model, eqx.is_inexact_array))
    )
    # ... and loads without x64, giving the same draws.
    back = PersistentPosteriorEstimator.load(path)
    np.testing.assert_array_equal(back.sample_posterior(ENC, 6, seed=3).samples, want)


# ---------------------------------------------------------------- constructor floats (issue 32)
@pytest.mark.parametrize(
    "bad",
    [
        {"learning_rate": np.nan},
        {"weight_decay": np.inf},  # was accepted, as were NaN weights and targets below
        {"spline_entropy_regularization_weight": np.nan},
        {"stable_cube_edge_hit_rate_threshold": np.nan},
        {"warmup_epochs": np.inf},
    ],
)
def test_constructor_refuses_nan_and_inf_settings(bad):
    (name,) = bad
    with pytest.raises(ConfigError, match=f"{name}: expected a finite number"):
        ConditionalFlowPosterior(2, **TINY, **bad)


# ---------------------------------------------------------------- devices (issue 32)
@pytest.mark.parametrize("devices", [5, 2.5, True, [5], "gpu"])
def test_fit_refuses_devices_that_are_not_devices(unit_box_data, devices):
    post = ConditionalFlowPosterior(2, **TINY, num_epochs=1, batch_size=64)
    with pytest.raises(ConfigError, match="devices: expected"):  # was TypeError for 5
        post.fit(unit_box_data(64), devices=devices)
    assert post.model is None


# ---------------------------------------------------------------- checkpoints (issue 32)
def _mse(model, batch, key):
    return jnp.mean((jax.vmap(model)(batch["x"]) - batch["y"]) ** 2)


CKPT = dict(
    learning_rate=1e-2,
    batch_size=32,
    seed=1,
    progress=False,
    checkpoint_backend="equinox",
    lr_schedule_total_epochs=3,
)


@pytest.fixture(scope="module")
def one_checkpoint(tmp_path_factory):
    """A checkpoint folder after one epoch of a tiny regression, and its problem."""
    x = jax.random.normal(jax.random.key(0), (64, 3))
    model = eqx.nn.MLP(3, "scalar", 4, 1, key=jax.random.key(2))
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    train = {"x": x, "y": x[:, 0]}
    SBITrainer(num_epochs=1, checkpoint_directory=str(folder), **CKPT).fit(model, _mse, train)
    return folder, model, train


def _tamper_state(one_checkpoint, tmp_path, edit):
    folder = tmp_path / "run"
    shutil.copytree(one_checkpoint[0], folder)
    (state_file,) = folder.glob("checkpoint_*/trainer_state.json")
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps(edit(state)))
    return folder, state_file


def test_resume_from_a_tampered_epoch_is_an_artifact_error(one_checkpoint, tmp_path):
    # Was: OverflowError "Python integer -3 out of bounds for uint32".
    folder, _ = _tamper_state(one_checkpoint, tmp_path, lambda s: s | {"epoch": -3})
    trainer = SBITrainer(
        num_epochs=3, checkpoint_directory=str(folder), resume_from_checkpoint=True, **CKPT
    )
    with pytest.raises(ArtifactError, match=r"trainer_state\.json: entry 'epoch'"):
        trainer.fit(one_checkpoint[1], _mse, one_checkpoint[2])


def _history(**lists):
    return lambda s: s | {"history": s["history"] | lists}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s | {"epoch": 10**30}, "'epoch'"),  # was accepted
        (lambda s: s | {"epoch": "1"}, "'epoch'"),  # was TypeError
        (lambda s: s | {"epoch": 1.0}, "'epoch'"),
        (lambda s: s | {"history": "x"}, "'history'"),  # was AttributeError
        (_history(train_loss=[]), r"history\['train_loss'\].*1 numbers"),  # was accepted
        (_history(val_loss=["a"]), r"history\['val_loss'\]"),
        (lambda s: {k: v for k, v in s.items() if k != "history"}, "'history' is missing"),
        (lambda s: s | {"best_epoch": 7}, "'best_epoch'"),  # was IndexError-prone
        (lambda s: s | {"since_improved": "z"}, "'since_improved'"),
        (lambda s: s | {"n_decays": 10**20}, "'n_decays'"),
        (lambda s: s | {"lr_factor": "a"}, "'lr_factor'"),  # was TypeError
        (lambda s: s | {"stopped_early": "no"}, "'stopped_early'"),
        (lambda s: s | {"best_loss": "x"}, "'best_loss'"),
        (lambda s: s | {"run": []}, "'run'"),  # was AttributeError
        (lambda s: [1, 2], "expected a JSON object"),  # was TypeError
    ],
)
def test_tampered_trainer_state_is_an_artifact_error_naming_it(
    one_checkpoint, tmp_path, edit, match
):
    folder, state_file = _tamper_state(one_checkpoint, tmp_path, edit)
    with pytest.raises(ArtifactError, match=match) as info:
        load_latest_checkpoint(folder, None)
    assert str(state_file) in str(info.value) or "JSON object" in str(info.value)


def test_huge_or_deeply_nested_trainer_state_is_an_artifact_error(
    one_checkpoint, tmp_path, monkeypatch
):
    from orrery.sbi.training import _checkpoint

    folder, state_file = _tamper_state(one_checkpoint, tmp_path, lambda s: s)
    monkeypatch.setattr(_checkpoint, "_MAX_STATE_BYTES", 64)  # the real limit is 64 MiB
    with pytest.raises(ArtifactError, match="more than the 64 bytes"):
        load_latest_checkpoint(folder, None)
    monkeypatch.undo()
    state_file.write_text("[" * 200_000 + "]" * 200_000)  # was a RecursionError
    with pytest.raises(ArtifactError, match="too deeply"):
        load_latest_checkpoint(folder, None)


def test_an_untampered_trainer_state_passes_the_checks(one_checkpoint, tmp_path):
    folder, _ = _tamper_state(one_checkpoint, tmp_path, lambda s: s)
    trainer = SBITrainer(
        num_epochs=2, checkpoint_directory=str(folder), resume_from_checkpoint=True, **CKPT
    )
    _, art = trainer.fit(one_checkpoint[1], _mse, one_checkpoint[2])
    assert art.trainer_metadata["resumed_from_epoch"] == 1


# ---------------------------------------------------------------- diagnostics (issue 32)
def test_calibration_warns_about_internal_space_truths(posterior):
    from orrery.sbi.diagnostics import expected_coverage, sbc_ranks, tarp

    rng = np.random.default_rng(0)
    obs = [EncodedObservation(rng.normal(size=8).astype(np.float32)) for _ in range(12)]
    physical = np.column_stack([rng.uniform(0, 1, 12), rng.uniform(-1, 1, 12)])
    u = (physical - [0.0, -1.0]) / [1.0, 2.0]
    internal = np.log(u / (1 - u))  # the posterior's "unconstrained" coordinates
    box = np.all((internal >= [0, -1]) & (internal <= [1, 1]), axis=1)
    outside = int(np.sum(~box))
    assert outside > 6
    for diagnostic in (sbc_ranks, expected_coverage, tarp):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            diagnostic(posterior, physical, obs, num_posterior_samples=16)
        with pytest.warns(UserWarning, match=f"{diagnostic.__name__}: {outside} of 12 true"):
            diagnostic(posterior, internal, obs, num_posterior_samples=16)


# ---------------------------------------------------------------- fit inputs (issue 32)
class _Reader:
    """A minimal dataset reader whose validation values or training uncertainties are bad."""

    def __init__(self, bad):
        rng = np.random.default_rng(0)
        self.theta = rng.uniform(size=(96, 2))
        self.x = self.theta + 0.1 * rng.normal(size=self.theta.shape)
        self.bad = bad

    def iter_batches(self, split, batch_size, *, seed, shuffle):
        rows = slice(0, 64) if split == "train" else slice(64, None)
        x = self.x[rows].astype(np.float32)
        block = {"values": x, "uncertainties": np.full_like(x, 0.1)}
        if split == "validation" and self.bad == "values":
            x[3, 1] = np.nan
        if split == "train" and self.bad == "uncertainties":
            block["uncertainties"][5, 0] = np.inf
        yield PosteriorBatch(self.theta[rows], {"aux": block})


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("values", r"validation observations\['aux'\]"),  # was: val loss inf, silently
        ("uncertainties", r"train observations\['aux'\] uncertainties"),  # was: loss inf
    ],
)
def test_fit_refuses_non_finite_validation_values_and_uncertainties(bad, match):
    post = ConditionalFlowPosterior(2, **TINY, num_epochs=1, batch_size=32)
    with pytest.raises(ValueDomainError, match=match):
        post.fit(_Reader(bad))
    assert post.model is None
