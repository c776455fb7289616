"""PosteriorSamples: conversion to physical units and Draws, clamping of non-finite draws."""

import numpy as np

from orrery.sbi import ParameterSpace, PosteriorSamples
from orrery.sbi.samples import CLAMP_VALUE, clamp_nonfinite


def test_clamping_counts_rows_and_keeps_cube_draws_in_the_cube():
    draws = np.array([[0.2, np.nan], [np.inf, 0.5], [0.1, 0.2], [-np.inf, 0.3]], np.float32)
    cube, n_bad = clamp_nonfinite(draws, ParameterSpace("cube", [0, 0], [1, 1]))
    assert n_bad == 3
    np.testing.assert_array_equal(cube[:, 0], np.array([0.2, 1.0, 0.1, 0.0], np.float32))
    free, _ = clamp_nonfinite(draws, ParameterSpace("unconstrained", [0, 0], [1, 1]))
    assert np.all(np.isfinite(free)) and free[1, 0] == np.float32(CLAMP_VALUE)


def test_conversion_to_physical_and_draws():
    space = ParameterSpace("cube", [10.0, -1.0], [20.0, 1.0])
    samples = PosteriorSamples(np.array([[0.0, 0.5], [1.0, 0.25]]), ["mass", "spin"], space)
    np.testing.assert_allclose(samples.to_physical(), [[10.0, 0.0], [20.0, -0.5]])
    draws = samples.to_draws()
    assert draws.names == ["mass", "spin"] and draws.n_draws == 2
    np.testing.assert_allclose(draws["spin"][0], [0.0, -0.5])
    raw = samples.to_draws(physical=False)
    np.testing.assert_allclose(raw["mass"][0], [0.0, 1.0])
    assert len(samples) == 2 and samples.parameter_space == "cube"
