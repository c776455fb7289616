"""ConditionalFlowPosterior.recommended: a configured, unfitted, budget-aware recipe."""

import pytest

from orrery.interface import ConfigError
from orrery.sbi import ConditionalFlowPosterior, ConditionalSplineFlowPosterior


def test_recommended_is_unfitted_and_adapts_to_the_budget():
    small = ConditionalFlowPosterior.recommended(3, 1_000)
    large = ConditionalFlowPosterior.recommended(3, 100_000)
    assert small.model is None and small.parameter_dim == 3
    assert small.early_stopping_patience and small.use_cosine_schedule
    assert small.hidden_dim < large.hidden_dim and small.batch_size < large.batch_size
    assert small.num_epochs > large.num_epochs
    assert small.parameter_space == "physical" and small.flow_family == "spline"


def test_overrides_replace_the_recipe_and_unknown_ones_are_refused():
    post = ConditionalFlowPosterior.recommended(2, 10_000, num_epochs=7, seed=3)
    assert post.num_epochs == 7 and post.seed == 3
    assert type(ConditionalSplineFlowPosterior.recommended(2, 500)) is (
        ConditionalSplineFlowPosterior
    )
    with pytest.raises(ConfigError, match="num_epoch"):
        ConditionalFlowPosterior.recommended(2, 10_000, num_epoch=7)
    with pytest.raises(ConfigError, match="num_simulations"):
        ConditionalFlowPosterior.recommended(2, 0)
