"""Diagnostics on the user's terms: physical truths and observations as the user has them
(ObservationBlocks, EncodedObservations, raw values), whatever the parameter space."""

import warnings

import numpy as np
import pytest

from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset
from orrery.sbi.diagnostics import expected_coverage, posterior_c2st, sbc_ranks, tarp

TINY = dict(embedding_dim=8, hidden_dim=16, num_coupling_layers=2, conditioner_depth=1)
LEVELS = [0.2, 0.5, 0.8]


def simulate(n, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(2.0, 4.0, size=(n, 1))  # a box prior away from the origin
    return theta, theta + 0.15 * rng.normal(size=theta.shape)


@pytest.fixture(scope="module")
def posteriors():
    theta, x = simulate(800, 0)
    ds = SimulationDataset.from_arrays(theta, x, bounds=[[2.0, 4.0]], seed=0)
    out = {}
    for space in ("physical", "cube", "unconstrained"):
        post = ConditionalFlowPosterior(
            1,
            **TINY,
            flow_family="affine",
            parameter_space=space,
            num_epochs=40,
            batch_size=64,
            learning_rate=1e-2,
            early_stopping_patience=5,
            seed=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post.fit(ds)
        out[space] = post
    return out


def test_physical_truths_give_the_same_coverage_in_every_space(posteriors):
    theta, x = simulate(80, 1)
    blocks = [[ObservationBlock("auxiliary", row)] for row in x]
    results = {
        space: expected_coverage(post, theta, blocks, levels=LEVELS, num_posterior_samples=200)
        for space, post in posteriors.items()
    }
    for result in results.values():
        assert result.space == "physical" and result.method == "log_prob"
        # calibrated to within sampling error of 80 observations
        assert np.all(np.abs(result.coverage - LEVELS) < 0.2), result.coverage
    cov = np.stack([r.coverage for r in results.values()])
    assert np.all(cov.max(0) - cov.min(0) <= 0.15), cov


def test_blocks_encoded_and_raw_observations_give_identical_results(posteriors):
    theta, x = simulate(20, 2)
    post = posteriors["cube"]
    blocks = [[ObservationBlock("auxiliary", row)] for row in x]
    encoded = post.batch_encode_observation(blocks)
    kw = dict(num_posterior_samples=50, seed=3)
    ranks = [sbc_ranks(post, theta, obs, **kw) for obs in (blocks, encoded, x)]
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_array_equal(ranks[0], ranks[2])
    cov = [expected_coverage(post, theta, obs, **kw).coverage for obs in (blocks, encoded, x)]
    np.testing.assert_array_equal(cov[0], cov[1])
    np.testing.assert_array_equal(cov[0], cov[2])
    result = tarp(post, theta, blocks, **kw)
    assert result.space == "physical" and np.all(np.isfinite(result.ecp))


def test_posterior_c2st_takes_physical_reference_samples(posteriors):
    pytest.importorskip("sklearn")
    _, x = simulate(1, 3)
    rng = np.random.default_rng(0)
    # the exact posterior is close to N(x, 0.15) inside the box
    reference = rng.normal(x[0, 0], 0.15, size=(4000, 1))
    reference = reference[(reference > 2.0) & (reference < 4.0)][:300, None]
    obs = [ObservationBlock("auxiliary", x[0])]
    score = posterior_c2st(posteriors["unconstrained"], obs, reference, n_folds=3)
    assert 0.4 < score < 0.75
