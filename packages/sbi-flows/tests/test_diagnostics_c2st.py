"""C2ST: chance level for one distribution, near 1 for separated ones."""

import numpy as np
import pytest

from orrery.interface import ShapeError

pytest.importorskip("sklearn")

from orrery.sbi.diagnostics import c2st


def test_same_distribution_is_near_chance():
    rng = np.random.default_rng(0)
    score = c2st(rng.normal(size=(400, 2)), rng.normal(size=(400, 2)), seed=0)
    assert 0.4 < score < 0.6


def test_separated_distributions_are_near_one():
    rng = np.random.default_rng(1)
    score = c2st(rng.normal(size=(400, 2)), rng.normal(loc=6.0, size=(400, 2)), seed=0)
    assert score > 0.97


def test_deterministic_given_seed_and_rejects_mismatched_dimensions():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 2)), rng.normal(5.0, size=(60, 2))
    assert c2st(a, b, seed=3) == c2st(a, b, seed=3) == c2st(a, b, seed=3, n_jobs=2)
    with pytest.raises(ShapeError, match="same dimension"):
        c2st(a, rng.normal(size=(100, 3)))
