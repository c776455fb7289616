"""ObservationBlock and EncodedObservation validation."""

import numpy as np
import pytest

from orrery.interface import ConfigError, ShapeError, ValueDomainError
from orrery.sbi import EncodedObservation, ObservationBlock


def test_block_defaults_its_name_to_the_modality_and_stores_arrays():
    block = ObservationBlock("spectrum", [1.0, 2.0, 3.0], uncertainties=[0.1, 0.1, 0.2])
    assert block.name == "spectrum"
    assert block.size == 3
    np.testing.assert_array_equal(block.uncertainties, [0.1, 0.1, 0.2])
    named = ObservationBlock("photometry", 4.0, name="gaia")
    assert named.name == "gaia" and named.values.shape == (1,)


def test_unknown_modality_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match="spectrum"):
        ObservationBlock("spectrun", [1.0])


def test_nan_values_are_rejected_naming_the_block():
    with pytest.raises(ValueDomainError, match="values of block 'spec'"):
        ObservationBlock("spectrum", [1.0, np.nan], name="spec")


def test_negative_uncertainties_and_shape_mismatches_are_rejected():
    with pytest.raises(ValueDomainError, match="non-negative"):
        ObservationBlock("photometry", [1.0, 2.0], uncertainties=[0.1, -0.1])
    with pytest.raises(ShapeError, match="uncertainties"):
        ObservationBlock("photometry", [1.0, 2.0], uncertainties=[0.1])
    with pytest.raises(ShapeError, match="coordinates"):
        ObservationBlock("spectrum", [1.0, 2.0], coordinates=[1.0, 2.0, 3.0])
    with pytest.raises(ShapeError, match="1-D"):
        ObservationBlock("spectrum", np.zeros((2, 2)))


def test_encoded_observation_needs_a_vector():
    enc = EncodedObservation(np.zeros(4), {"block_names": ["a"]})
    assert enc.embedding.shape == (4,)
    with pytest.raises(ShapeError):
        EncodedObservation(np.zeros((2, 2)))
