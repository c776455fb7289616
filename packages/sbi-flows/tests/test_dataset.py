"""SimulationDataset: split, preprocessing, bounds, manifest and batches."""

import numpy as np
import pytest

from orrery.interface import ConfigError, ShapeError, ValueDomainError
from orrery.sbi import PosteriorBatch, SimulationDataset


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 1, size=(50, 2))
    spec = theta[:, :1] * np.linspace(1, 2, 12) + rng.normal(0, 0.1, (50, 12))
    phot = rng.normal(5.0, 2.0, size=(50, 3))
    return theta, {"spec": spec, "photometry": phot}, {"spec": np.full((50, 12), 0.1)}


def test_split_is_disjoint_complete_and_seeded(arrays):
    theta, obs, unc = arrays
    ds = SimulationDataset.from_arrays(
        theta,
        obs,
        modalities={"spec": "spectrum"},
        uncertainties=unc,
        validation_fraction=0.2,
        seed=3,
    )
    assert (ds.n_train, ds.n_validation) == (40, 10)
    assert set(ds.train_indices) | set(ds.validation_indices) == set(range(50))
    assert not set(ds.train_indices) & set(ds.validation_indices)
    again = SimulationDataset.from_arrays(
        theta,
        obs,
        modalities={"spec": "spectrum"},
        uncertainties=unc,
        validation_fraction=0.2,
        seed=3,
    )
    np.testing.assert_array_equal(again.validation_indices, ds.validation_indices)
    assert again.fingerprint == ds.fingerprint
    assert ds.observation_schema == {
        "spec": {"modality": "spectrum", "size": 12, "has_uncertainties": True},
        "photometry": {"modality": "photometry", "size": 3, "has_uncertainties": False},
    }


def test_preprocessing_uses_training_statistics_and_scales_uncertainties(arrays):
    theta, obs, unc = arrays
    ds = SimulationDataset.from_arrays(
        theta, obs, modalities={"spec": "spectrum"}, uncertainties=unc
    )
    train = ds.split_arrays("train")
    np.testing.assert_allclose(train.observations["photometry"]["values"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.observations["photometry"]["values"].std(0), 1, atol=1e-5)
    scale = np.asarray(ds.preprocessing_metadata["spec"]["value_scale"])
    np.testing.assert_allclose(
        train.observations["spec"]["uncertainties"][0], 0.1 / scale, rtol=1e-5
    )
    assert "uncertainties" not in train.observations["photometry"]


def test_iter_batches_covers_the_split_once_and_shuffles_with_the_seed(arrays):
    theta, obs, _ = arrays
    ds = SimulationDataset.from_arrays(theta, obs)
    batches = list(ds.iter_batches("train", 16, seed=1))
    assert all(isinstance(b, PosteriorBatch) for b in batches)
    assert [b.parameters.shape[0] for b in batches] == [16, 16, 13]
    seen = np.concatenate([b.parameters for b in batches])
    np.testing.assert_allclose(np.sort(seen[:, 0]), np.sort(theta[ds.train_indices, 0]), rtol=1e-6)
    ordered = np.concatenate([b.parameters for b in ds.iter_batches("train", 16, shuffle=False)])
    np.testing.assert_allclose(ordered, theta[ds.train_indices], rtol=1e-6)
    other = np.concatenate([b.parameters for b in ds.iter_batches("train", 16, seed=2)])
    assert not np.allclose(other, seen)
    with pytest.raises(ConfigError, match="split"):
        next(ds.iter_batches("test", 4))


def test_bounds_are_derived_with_a_margin_or_checked(arrays):
    theta, obs, _ = arrays
    ds = SimulationDataset.from_arrays(theta, obs)
    assert np.all(ds.parameter_bounds[:, 0] < theta.min(0))
    assert np.all(ds.parameter_bounds[:, 1] > theta.max(0))
    given = SimulationDataset.from_arrays(theta, obs, bounds=[[0, 1], [0, 1]])
    assert given.manifest["bounds_source"] == "given"
    with pytest.raises(ConfigError, match="outside"):
        SimulationDataset.from_arrays(theta, obs, bounds=[[0, 0.5], [0, 1]])
    with pytest.raises(ShapeError, match="bounds"):
        SimulationDataset.from_arrays(theta, obs, bounds=[[0, 1]])


def test_fingerprint_changes_with_the_content(arrays):
    theta, obs, _ = arrays
    a = SimulationDataset.from_arrays(theta, obs)
    changed = dict(obs, photometry=obs["photometry"] + 1e-9)
    b = SimulationDataset.from_arrays(theta, changed)
    c = SimulationDataset.from_arrays(theta, obs, validation_fraction=0.3)
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert a.manifest["n_simulations"] == 50


def test_array_observations_become_one_auxiliary_block():
    theta = np.arange(10.0)
    ds = SimulationDataset.from_arrays(theta, theta * 2, validation_fraction=0.0)
    assert ds.observation_schema["auxiliary"]["modality"] == "auxiliary"
    assert ds.parameter_names == ["theta[0]"] and ds.n_validation == 0


def test_bad_inputs_name_the_argument(arrays):
    theta, obs, _ = arrays
    with pytest.raises(ValueDomainError, match="observations"):
        SimulationDataset.from_arrays(theta, dict(obs, photometry=np.full((50, 3), np.nan)))
    with pytest.raises(ShapeError, match="rows"):
        SimulationDataset.from_arrays(theta, {"a": np.zeros((49, 2))})
    with pytest.raises(ConfigError, match="modalities"):
        SimulationDataset.from_arrays(theta, obs, modalities={"spec": "radio"})
    with pytest.raises(ConfigError, match="parameter_names"):
        SimulationDataset.from_arrays(theta, obs, parameter_names=["a"])
    with pytest.raises(ConfigError, match="validation_fraction"):
        SimulationDataset.from_arrays(theta, obs, validation_fraction=1.0)
