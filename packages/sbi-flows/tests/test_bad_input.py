"""Bad input at the sbi-flows boundaries: each case raises its exact error class (issue 16)."""

import copy
import json

import jax
import numpy as np
import pytest

from orrery.interface import (
    ArtifactError,
    ConfigError,
    ShapeError,
    load_artifact,
    save_artifact,
)
from orrery.sbi import (
    ConditionalFlowPosterior,
    EncodedObservation,
    ObservationBlock,
    ParameterSpace,
    PersistentPosteriorEstimator,
)
from orrery.sbi.persistence import ARTIFACT_KIND

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
