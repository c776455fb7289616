"""Saving and loading posteriors: exact round trips, metadata, schema checks."""

import json

import numpy as np
import pytest

from orrery.interface import ArtifactError
from orrery.sbi import (
    POSTERIOR_SCHEMA_VERSION,
    ConditionalFlowPosterior,
    ConditionalSplineFlowPosterior,
    EncodedObservation,
    ParameterSpace,
    PersistentPosteriorEstimator,
)

TINY = dict(
    embedding_dim=8,
    hidden_dim=16,
    num_coupling_layers=2,
    conditioner_depth=1,
    photometry_embedding_dim=4,
)
METADATA = {
    "parameter_names": ["a", "b"],
    "parameter_space": ParameterSpace("cube", [0.0, -1.0], [1.0, 1.0]).to_config(),
    "flow_shift": [0.0, 0.0],
    "flow_scale": [1.0, 1.0],
    "observation_schema": {
        "photometry": {"modality": "photometry", "size": 3, "has_uncertainties": True}
    },
    "preprocessing_metadata": {
        "photometry": {
            "modality": "photometry",
            "value_mean": [0.0, 1.0, 2.0],
            "value_scale": [1.0, 2.0, 3.0],
        }
    },
    "dataset_manifest": {"fingerprint": "abc123", "n_simulations": 10},
    "dataset_fingerprint": "abc123",
}


@pytest.fixture(scope="module")
def posterior():
    post = ConditionalSplineFlowPosterior(
        2, **TINY, parameter_space="cube", seed=4, task_metadata={"survey": "demo", "run": 3}
    )
    post.hydrate_loaded_metadata(METADATA)
    return post


ENC = EncodedObservation(np.linspace(-1, 1, 8).astype(np.float32))


def test_save_load_gives_identical_samples_and_log_probs(posterior, tmp_path):
    path = posterior.save(tmp_path / "post")
    loaded = PersistentPosteriorEstimator.load(path)
    assert type(loaded) is ConditionalSplineFlowPosterior
    before = posterior.sample_posterior(ENC, 200, seed=2).samples
    after = loaded.sample_posterior(ENC, 200, seed=2).samples
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(posterior.log_prob(ENC, before), loaded.log_prob(ENC, before))
    assert loaded.task_metadata == {"survey": "demo", "run": 3}
    assert loaded.dataset_fingerprint == "abc123"
    assert loaded.parameter_names == ["a", "b"]
    assert loaded.preprocessing_metadata == METADATA["preprocessing_metadata"]
    assert loaded.space.to_config() == posterior.space.to_config()
    assert loaded._build_estimator_config() == posterior._build_estimator_config()


def test_metadata_file_records_versions_and_configuration(posterior, tmp_path):
    path = posterior.save(tmp_path / "post")
    doc = json.loads((path / "metadata.json").read_text())
    config = doc["config"]
    assert config["posterior_schema_version"] == POSTERIOR_SCHEMA_VERSION
    assert config["estimator_family"] == "conditional_flow"
    assert config["estimator_config"]["constructor"]["flow_family"] == "spline"
    assert doc["producer"]["distribution"] == "sbi-flows"
    rebuilt = ConditionalFlowPosterior.from_serialized_metadata(config)
    assert rebuilt.model is None and rebuilt.hidden_dim == 16 and rebuilt.seed == 4


def test_incompatible_schema_names_both_versions(posterior, tmp_path):
    path = posterior.save(tmp_path / "post")
    meta = path / "metadata.json"
    doc = json.loads(meta.read_text())
    doc["config"]["posterior_schema_version"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=rf"version 99.*version {POSTERIOR_SCHEMA_VERSION}"):
        ConditionalFlowPosterior.load(path)


def test_backend_state_round_trip_and_corruption(posterior, tmp_path):
    posterior.save_backend_state(tmp_path / "state")
    fresh = ConditionalSplineFlowPosterior(2, **TINY, parameter_space="cube", seed=9)
    fresh.hydrate_loaded_metadata(METADATA)
    assert not np.array_equal(
        fresh.sample_posterior(ENC, 5, seed=0).samples,
        posterior.sample_posterior(ENC, 5, seed=0).samples,
    )
    fresh.load_backend_state(tmp_path / "state")
    np.testing.assert_array_equal(
        fresh.sample_posterior(ENC, 5, seed=0).samples,
        posterior.sample_posterior(ENC, 5, seed=0).samples,
    )
    (tmp_path / "state" / "backend_state.eqx").write_bytes(b"\x00" * 10)
    with pytest.raises(ArtifactError, match="backend state"):
        fresh.load_backend_state(tmp_path / "state")
    with pytest.raises(ArtifactError, match="no backend state"):
        fresh.load_backend_state(tmp_path / "missing")
    with open(tmp_path / "state" / "backend_state.eqx", "wb") as handle:
        handle.truncate(2**30)  # sparse: sizes are checked before anything is read
    with pytest.raises(ArtifactError, match=f"holds {2**30} bytes"):
        fresh.load_backend_state(tmp_path / "state")


def test_unfitted_or_unsafe_metadata_cannot_be_saved(posterior, tmp_path):
    with pytest.raises(Exception, match="not fitted"):
        ConditionalFlowPosterior(2).save(tmp_path / "x")
    odd = ConditionalSplineFlowPosterior(
        2, **TINY, parameter_space="cube", task_metadata={"array": np.zeros(3)}
    )
    odd.hydrate_loaded_metadata(METADATA)
    with pytest.raises(ArtifactError, match="task_metadata"):
        odd.save(tmp_path / "odd")
    assert not (tmp_path / "odd").exists()
