"""Support respected: draws outside a bounded prior are rejected and counted; log_prob is
-inf outside the support in every space; end-of-fit warnings speak up (and stay quiet)."""

import re
import warnings

import numpy as np
import pytest

from orrery.interface import ValueDomainError
from orrery.sbi import (
    ConditionalFlowPosterior,
    EncodedObservation,
    ObservationBlock,
    ParameterSpace,
    SimulationDataset,
)
from orrery.sbi._posterior import inference as _inference

TINY = dict(embedding_dim=8, hidden_dim=16, num_coupling_layers=2, conditioner_depth=1)


def untrained(space, *, bounded=True, lower=-1.0, upper=2.0):
    """A 1-D posterior with an untrained flow (N(0, 1)-like), built without training."""
    post = ConditionalFlowPosterior(1, **TINY, flow_family="affine", parameter_space=space)
    post.hydrate_loaded_metadata(
        {
            "parameter_names": ["p"],
            "parameter_space": ParameterSpace(space, [lower], [upper]).to_config(),
            "flow_shift": [0.0],
            "flow_scale": [1.0],
            "observation_schema": {
                "auxiliary": {"modality": "auxiliary", "size": 3, "has_uncertainties": False}
            },
            "support_bounded": bounded,
        }
    )
    return post


ENC = EncodedObservation(np.zeros(8, np.float32))


def test_physical_draws_outside_a_bounded_prior_are_rejected_and_counted():
    post = untrained("physical", lower=-0.5, upper=3.0)
    raw = post.sample_posterior(ENC, 2000, seed=0, reject_outside_support=False)
    outside = np.mean((raw.samples < -0.5) | (raw.samples > 3.0))
    assert 0.1 < outside < 0.6 and raw.num_outside_support == int(outside * 2000)
    assert raw.acceptance_rate == 1.0
    kept = post.sample_posterior(ENC, 2000, seed=0)
    assert kept.samples.shape == (2000, 1) and kept.num_outside_support == 0
    assert np.all((kept.samples >= -0.5) & (kept.samples <= 3.0))
    assert kept.acceptance_rate == pytest.approx(1 - outside, abs=0.03)
    batch = post.batch_sample_posterior(np.zeros((3, 8)), 500, base_seed=1)
    assert batch.shape == (3, 500, 1) and np.all((batch >= -0.5) & (batch <= 3.0))


def test_low_acceptance_warns_and_impossible_support_raises(monkeypatch):
    post = untrained("physical", lower=-0.5, upper=3.0)
    monkeypatch.setattr(_inference, "ACCEPTANCE_WARNING_THRESHOLD", 0.99)
    with pytest.warns(UserWarning, match="fell inside the prior's bounds"):
        post.sample_posterior(ENC, 100, seed=0)
    far = untrained("physical", lower=40.0, upper=41.0)
    with pytest.raises(ValueDomainError, match="reject_outside_support=False"):
        far.sample_posterior(ENC, 50, seed=0)


def test_derived_bounds_are_not_a_support():
    post = untrained("physical", bounded=False, lower=-0.5, upper=0.5)
    draws = post.sample_posterior(ENC, 500, seed=0)
    assert draws.acceptance_rate == 1.0 and np.any(np.abs(draws.samples) > 0.5)
    assert np.isfinite(post.log_prob(ENC, np.array([5.0])))


@pytest.mark.parametrize(
    ("space", "outside"),
    [
        ("physical", [[-2.0], [2.5], [np.inf]]),
        ("cube", [[-0.1], [1.2], [np.inf]]),
        ("unconstrained", [[np.inf], [-np.inf]]),
    ],
)
def test_log_prob_is_minus_inf_outside_the_support(space, outside):
    post = untrained(space)
    lp = post.log_prob(ENC, np.array(outside))
    assert np.all(lp == -np.inf)
    assert np.isnan(post.log_prob(ENC, np.array([np.nan])))  # undefined, not outside
    inside = post.log_prob(ENC, np.array([[0.5]]))
    assert np.all(np.isfinite(inside))


def test_physical_log_prob_batch_is_minus_inf_outside_the_box_in_every_space():
    for space in ("physical", "cube", "unconstrained"):
        post = untrained(space)
        theta = np.array([[[-1.5], [0.5], [2.5]]])
        lp = post.log_prob_batch([ENC], theta)
        assert lp.shape == (1, 3) and lp[0, 0] == -np.inf and lp[0, 2] == -np.inf
        assert np.isfinite(lp[0, 1])


# ---------------------------------------------------------------- defaults that speak
@pytest.fixture(scope="module")
def box_data():
    rng = np.random.default_rng(0)
    theta = rng.uniform(size=(600, 2))
    x = theta + 0.1 * rng.normal(size=theta.shape)
    return SimulationDataset.from_arrays(theta, x, bounds=[[0, 1], [0, 1]], seed=0)


@pytest.fixture(scope="module")
def under_trained(box_data):
    post = ConditionalFlowPosterior(2, **TINY, num_epochs=4, batch_size=64, learning_rate=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifacts = post.fit(box_data)
    return post, artifacts, [str(w.message) for w in caught]


def test_under_trained_fit_warns_with_the_improvement_and_the_recipe(under_trained):
    _, artifacts, caught = under_trained
    pattern = r"still improving.*fell by [0-9.]+ nats.*last 2 of 4 epochs.*recommended\("
    assert any(re.search(pattern, m) for m in caught), caught
    assert artifacts.trainer_metadata["warnings"] == [m for m in caught if "fit:" in m]


def test_an_under_trained_recipe_is_told_to_train_longer_not_to_use_the_recipe(box_data):
    post = ConditionalFlowPosterior.recommended(
        2, 600, **TINY, num_epochs=4, linear_gaussian_start=False, seed=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.fit(box_data)
    messages = [str(w.message) for w in caught if "still improving" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert "raise num_epochs (the recipe chose 4" in messages[0]
    assert "recommended(" not in messages[0]


def test_converged_fit_does_not_warn(box_data):
    post = ConditionalFlowPosterior(
        2,
        **TINY,
        num_epochs=300,
        batch_size=64,
        learning_rate=1e-2,
        early_stopping_patience=5,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        artifacts = post.fit(box_data)
    assert artifacts.trainer_metadata["stopped_early"]
    assert artifacts.trainer_metadata["warnings"] == []


def test_small_training_set_warns(box_data):
    rng = np.random.default_rng(1)
    theta = rng.uniform(size=(40, 2))
    small = SimulationDataset.from_arrays(theta, theta, bounds=[[0, 1], [0, 1]], seed=0)
    post = ConditionalFlowPosterior(2, **{**TINY, "hidden_dim": 64}, num_epochs=1)
    with pytest.warns(UserWarning, match="over-fitting is likely"):
        post.fit(small)


def test_raw_vector_is_checked_and_normalised_as_the_single_block(under_trained):
    post, _, _ = under_trained
    x = np.array([0.3, 0.7])
    from_raw = post.sample_posterior(x, 20, seed=3).samples
    from_block = post.sample_posterior([ObservationBlock("auxiliary", x)], 20, seed=3).samples
    np.testing.assert_array_equal(from_raw, from_block)
