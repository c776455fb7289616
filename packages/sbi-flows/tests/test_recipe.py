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
    # 8,000 steps would be 23 epochs of 10^5 simulations; the floor keeps 60
    assert large.num_epochs == 60 and small.num_epochs == 400
    assert small.parameter_space == "physical" and small.flow_family == "spline_affine"
    decay, patience = small.lr_decay_patience, small.early_stopping_patience
    assert decay is not None and patience is not None and decay < patience
    assert small.encoder_linear_skip


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


def test_a_repeat_fit_of_the_same_architecture_with_another_seed_compiles_nothing(caplog):
    import logging

    import equinox as eqx
    import jax
    import numpy as np

    from orrery.sbi import ObservationBlock, SimulationDataset

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(300, 3))
    ds = SimulationDataset.from_arrays(theta, theta + 0.1 * rng.normal(size=theta.shape))
    tiny = dict(hidden_dim=8, embedding_dim=4, photometry_embedding_dim=4, num_epochs=2)
    first = ConditionalFlowPosterior.recommended(3, 300, seed=0, **tiny)
    first.fit(ds)
    first.sample_posterior([ObservationBlock("auxiliary", theta[0])], 50, seed=0)
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        second = ConditionalFlowPosterior.recommended(3, 300, seed=1, **tiny)
        second.fit(ds)
        draws = second.sample_posterior([ObservationBlock("auxiliary", theta[0])], 50, seed=0)
    compiled = [r.getMessage() for r in caplog.records if "XLA compilation" in r.getMessage()]
    assert compiled == []

    # Another seed is another network (its permutations included), not the first one again.
    def int_arrays(model):
        leaves = jax.tree.leaves(eqx.filter(model, eqx.is_array))
        return [np.asarray(x) for x in leaves if x.dtype.kind == "i"]

    perm, perm2 = int_arrays(first.model), int_arrays(second.model)
    assert perm and any(not np.array_equal(a, b) for a, b in zip(perm, perm2, strict=True))
    history, history2 = first.training_history, second.training_history
    assert history is not None and history2 is not None
    assert history2["val_loss"] != history["val_loss"]
    assert draws.to_physical().shape == (50, 3)


# ----------------------------------------------------------------------------- over-fitting
def _row_id_data(n, distractors):
    """theta with a weak signal beside noise features that tell every row apart."""
    import numpy as np

    from orrery.sbi import SimulationDataset

    rng = np.random.default_rng(5)
    theta = rng.normal(size=(n, 2))
    noise = rng.normal(size=(n, distractors))
    x = np.hstack([theta + 1.0 * rng.normal(size=(n, 2)), noise])
    return SimulationDataset.from_arrays(theta, x, seed=0)


def _over_fitting_messages(post, ds):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.fit(ds)
    return [str(w.message) for w in caught if "over-fitting: at the kept" in str(w.message)]


def test_the_over_fitting_warning_fires_on_an_over_fitting_fit_and_not_on_a_regularised_one():
    # 150 simulations, 60 pure-noise features, 27k weights: validation 1.3 nats above training
    loud = ConditionalFlowPosterior(
        2, flow_family="affine", num_coupling_layers=2, hidden_dim=64, embedding_dim=32,
        num_epochs=30, batch_size=32, learning_rate=3e-3,
    )  # fmt: skip
    (message,) = _over_fitting_messages(loud, _row_id_data(150, 60))
    assert "nats per simulation above the training loss" in message
    quiet = ConditionalFlowPosterior(
        2, flow_family="affine", num_coupling_layers=1, hidden_dim=8, embedding_dim=2,
        num_epochs=20, batch_size=64, early_stopping_patience=3,
    )  # fmt: skip
    assert _over_fitting_messages(quiet, _row_id_data(400, 40)) == []


@pytest.mark.slow  # about 20 s (the recipe's flow compiles)
def test_the_over_fitting_warning_fires_on_the_recipe_given_too_few_simulations():
    # The recipe's own network on 200 simulations with 60 noise features: the held-out
    # loss is best after the first epoch (of 37) and the kept state is 1.2 nats apart.
    ds = _row_id_data(200, 60)
    (message,) = _over_fitting_messages(ConditionalFlowPosterior.recommended(2, 200), ds)
    assert "stopped improving at epoch 1 of" in message
