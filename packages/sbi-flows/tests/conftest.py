"""Shared fixtures for the sbi-flows tests."""

import numpy as np
import pytest

from orrery.sbi import SimulationDataset


@pytest.fixture(scope="session")
def unit_box_data():
    """``make(n)``: a 2-D problem with a uniform prior on the unit box, x = theta + 0.1 noise."""

    def make(n: int) -> SimulationDataset:
        rng = np.random.default_rng(0)
        theta = rng.uniform(size=(n, 2))
        x = theta + 0.1 * rng.normal(size=theta.shape)
        return SimulationDataset.from_arrays(theta, x, bounds=[[0, 1], [0, 1]], seed=0)

    return make
