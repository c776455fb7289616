"""Calibration diagnostics on an analytic Gaussian posterior (exact and over-confident)."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from orrery.interface import ConfigTypeError, ShapeError, ValueDomainError
from orrery.sbi.diagnostics import (
    CoverageResult,
    TarpResult,
    expected_coverage,
    sbc_check,
    sbc_ranks,
    tarp,
)

NOISE = 0.5  # likelihood x ~ N(theta, NOISE^2 I); prior theta ~ N(0, I)
N_OBS, N_SAMPLES, DIM = 400, 400, 2


class GaussianPosterior:
    """Exact conjugate posterior N(x / (1 + s^2), s^2 / (1 + s^2)), optionally too narrow."""

    def __init__(self, width_factor=1.0):
        self.var = NOISE**2 / (1 + NOISE**2)
        self.sd = width_factor * np.sqrt(self.var)

    def mean(self, x):
        return np.asarray(x) / (1 + NOISE**2)

    def sample_batch(self, observations, n_samples, seed):
        rng = np.random.default_rng(seed)
        mean = self.mean(observations)
        return mean[:, None, :] + self.sd * rng.standard_normal((len(mean), n_samples, DIM))

    def log_prob_batch(self, observations, parameters):
        z = (parameters - self.mean(observations)[:, None, :]) / self.sd
        return -0.5 * np.sum(z**2, axis=-1) - DIM * np.log(self.sd)


class SamplesOnly:
    """Per-observation protocol without densities, wrapping results like PosteriorSamples."""

    def __init__(self, inner):
        self.inner = inner

    def sample_posterior(self, observation, n_samples, seed):
        out = self.inner.sample_batch(np.asarray(observation)[None], n_samples, seed)[0]
        return SimpleNamespace(samples=out)


@pytest.fixture(scope="module")
def simulations():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((N_OBS, DIM))
    x = theta + NOISE * rng.standard_normal((N_OBS, DIM))
    return theta, x


def sampling_error(levels, n=N_OBS):
    return 3.5 * np.sqrt(levels * (1 - levels) / n) + 0.01


@pytest.mark.parametrize("method", ["log_prob", "gaussian"])
def test_calibrated_posterior_has_nominal_coverage(simulations, method):
    theta, x = simulations
    result = expected_coverage(
        GaussianPosterior(), theta, x, num_posterior_samples=N_SAMPLES, seed=1, method=method
    )
    assert isinstance(result, CoverageResult) and result.method == method
    assert np.all(np.abs(result.coverage - result.levels) < sampling_error(result.levels))


@pytest.mark.parametrize("method", ["log_prob", "gaussian"])
def test_over_confident_posterior_under_covers(simulations, method):
    theta, x = simulations
    result = expected_coverage(
        GaussianPosterior(width_factor=0.5),
        theta,
        x,
        num_posterior_samples=N_SAMPLES,
        seed=1,
        method=method,
    )
    # In 2-D the level-g region of a half-width posterior holds the truth with
    # probability 1 - (1 - g)^(1/4) (the squared distance is 4x a chi-square with 2 dof).
    exact = 1 - (1 - result.levels) ** 0.25
    assert np.all(np.abs(result.coverage - exact) < sampling_error(exact))
    assert np.all(result.coverage < result.levels)


def test_auto_method_falls_back_to_samples(simulations):
    theta, x = simulations
    auto = expected_coverage(
        SamplesOnly(GaussianPosterior()), theta[:50], x[:50], seed=2, num_posterior_samples=200
    )
    assert auto.method == "gaussian"
    assert expected_coverage(GaussianPosterior(), theta[:50], x[:50], seed=2).method == "log_prob"


def test_sbc_ranks_are_uniform_only_when_calibrated(simulations):
    theta, x = simulations
    ranks = sbc_ranks(GaussianPosterior(), theta, x, num_posterior_samples=99, seed=3)
    assert ranks.shape == (N_OBS, DIM) and ranks.min() >= 0 and ranks.max() <= 99
    good = sbc_check(ranks, num_posterior_samples=99)
    assert np.all(good["chi2_pvalue"] > 1e-3) and np.all(good["ks_pvalue"] > 1e-3)
    narrow = sbc_ranks(GaussianPosterior(0.5), theta, x, num_posterior_samples=99, seed=3)
    bad = sbc_check(narrow, num_posterior_samples=99)
    assert np.all(bad["chi2_pvalue"] < 1e-6) and np.all(bad["ks_pvalue"] < 1e-6)
    assert good["num_bins"] == 20


def test_sbc_check_statistic_matches_a_hand_computed_case():
    # 4 draws -> ranks in {0..4}; 5 bins, one per rank; 10 observations.
    ranks = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 4]).reshape(-1, 1)
    out = sbc_check(ranks, num_posterior_samples=4, num_bins=5)
    observed, expected = np.array([7, 3, 3, 3, 4]), 4.0
    assert out["chi2"][0] == pytest.approx(np.sum((observed - expected) ** 2 / expected))
    with pytest.raises(ValueDomainError):
        sbc_check(ranks, num_posterior_samples=3)


def test_tarp_follows_the_diagonal_only_when_calibrated(simulations):
    theta, x = simulations
    good = tarp(GaussianPosterior(), theta, x, num_posterior_samples=N_SAMPLES, seed=4)
    assert isinstance(good, TarpResult)
    assert np.max(np.abs(good.ecp - good.alpha)) < 0.1 and good.ks_pvalue > 1e-3
    bad = tarp(GaussianPosterior(0.3), theta, x, num_posterior_samples=N_SAMPLES, seed=4)
    assert np.max(np.abs(bad.ecp - bad.alpha)) > 0.15 and bad.ks_pvalue < 1e-6


def test_protocols_agree(simulations):
    theta, x = simulations
    batch = GaussianPosterior()
    r1 = sbc_ranks(batch, theta[:5], x[:5], num_posterior_samples=50, seed=7)
    loop = SamplesOnly(batch)
    r2 = sbc_ranks(loop, theta[:5], x[:5], num_posterior_samples=50, seed=7)
    assert r1.shape == r2.shape == (5, DIM)

    class Embedded:  # the estimator's batched sampler on stacked embeddings
        def batch_sample_posterior(self, embeddings, n_samples, base_seed=0):
            assert isinstance(embeddings, np.ndarray) and embeddings.shape == (5, DIM)
            return batch.sample_batch(embeddings, n_samples, base_seed)

    encoded = [SimpleNamespace(embedding=row) for row in x[:5]]
    r3 = sbc_ranks(Embedded(), theta[:5], encoded, num_posterior_samples=50, seed=7)
    np.testing.assert_array_equal(r1, r3)


def test_bad_inputs_raise_clear_errors(simulations):
    theta, x = simulations
    with pytest.raises(ShapeError, match="same length"):
        sbc_ranks(GaussianPosterior(), theta[:3], x[:4], num_posterior_samples=10)
    with pytest.raises(TypeError, match="sample_batch"):
        sbc_ranks(object(), theta[:3], x[:3], num_posterior_samples=10)
    with pytest.raises(ValueDomainError, match="levels"):
        expected_coverage(GaussianPosterior(), theta[:3], x[:3], levels=[0.5, 1.0])
    with pytest.raises(ValueError, match="method"):
        expected_coverage(GaussianPosterior(), theta[:3], x[:3], method="kde")
    with pytest.raises(ShapeError, match="do not match"):
        sbc_ranks(GaussianPosterior(), theta[:3, :1], x[:3], num_posterior_samples=10)
    # issue 32: NaN levels and NaN or fractional ranks were taken (coverage 0; IndexError)
    with pytest.raises(ValueDomainError, match="levels"):
        expected_coverage(GaussianPosterior(), theta[:3], x[:3], levels=[0.5, np.nan])
    for ranks in ([[0.0], [np.nan], [3.0]], [[0.5], [1.0], [2.0]]):
        with pytest.raises(ValueDomainError, match="whole numbers"):
            sbc_check(np.array(ranks), num_posterior_samples=3)
    assert sbc_check(np.array([[0.0], [1.0], [2.0]]), num_posterior_samples=3)["num_bins"] == 2
    with pytest.raises(ConfigTypeError, match="log_prob"):
        expected_coverage(SamplesOnly(GaussianPosterior()), theta[:3], x[:3], method="log_prob")


class BoundedGaussian(GaussianPosterior):
    """The exact posterior, declaring a box support as a `ConditionalFlowPosterior` does."""

    def diagnostics_support(self):
        return np.full(DIM, -6.0), np.full(DIM, 6.0)


@pytest.mark.parametrize(
    "diagnostic",
    [
        lambda p, t, x: sbc_ranks(p, t, x, num_posterior_samples=20),
        lambda p, t, x: expected_coverage(p, t, x, num_posterior_samples=20),
        lambda p, t, x: tarp(p, t, x, num_posterior_samples=20),
    ],
    ids=["sbc_ranks", "expected_coverage", "tarp"],
)
def test_truths_outside_the_support_are_counted_in_a_warning(simulations, diagnostic):
    theta, x = simulations
    post = BoundedGaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # truths inside the support: not a word
        diagnostic(post, theta, x)
    moved = theta.copy()
    moved[:7, 1] += 50.0  # 7 truths far outside the box (was: a number, silently)
    with pytest.warns(UserWarning, match="7 of 400 true parameters lie outside"):
        diagnostic(post, moved, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a posterior without the method: no check
        diagnostic(GaussianPosterior(), moved, x)


def test_per_observation_seeds_are_split_from_the_seed_not_offset_from_it():
    from orrery.sbi.diagnostics._protocol import observation_seeds

    a, b = observation_seeds(0, 4), observation_seeds(1, 4)
    assert a == observation_seeds(0, 4) and len(set(a)) == 4
    assert all(0 <= s < 2**31 for s in a + b)
    assert not set(a) & set(b)  # with seed + i, seed 0's second draw was seed 1's first
    assert observation_seeds(0, 0) == []
