"""Auxiliary embedding heads: off at weight 0, add their losses when on, dropped after fit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.sbi import ConditionalFlowPosterior
from orrery.sbi._posterior.aux import AuxTrainingModel, aux_loss, with_aux_heads
from orrery.sbi._posterior.model import PosteriorModel, npe_loss

CONFIG = dict(
    embedding_dim=8,
    hidden_dim=16,
    num_coupling_layers=2,
    conditioner_depth=1,
    photometry_embedding_dim=8,
    parameter_space="cube",
    batch_size=32,
    seed=0,
    stable_inverse_forward_max_abs_error_threshold=None,
    stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
    stable_cube_edge_hit_rate_threshold=None,
)


@pytest.fixture(scope="module")
def setup(unit_box_data):
    ds = unit_box_data(128)
    post = ConditionalFlowPosterior(2, **CONFIG)
    post._adopt_dataset_metadata(ds, post._read_split(ds, "train"))
    batch = jax.tree.map(jnp.asarray, post._as_flow_batch(post._read_split(ds, "train")))
    return ds, post._build_model(), batch


def test_weight_zero_attaches_nothing(setup):
    _, model, _ = setup
    out = with_aux_heads(
        model, npe_loss, None, parameter_weight=0.0, scale_weight=0.0, key=jr.key(0)
    )
    assert out[0] is model and out[1] is npe_loss and out[2] is None


@pytest.mark.parametrize(("wp", "ws"), [(2.0, 0.0), (0.0, 0.5)])
def test_heads_add_their_weighted_losses(setup, wp, ws):
    _, model, batch = setup
    wrapped, loss, val_loss = with_aux_heads(
        model, npe_loss, None, parameter_weight=wp, scale_weight=ws, key=jr.key(0)
    )
    assert isinstance(wrapped, AuxTrainingModel)
    assert (wrapped.parameter_head is None) == (wp == 0)
    assert (wrapped.scale_head is None) == (ws == 0)

    @eqx.filter_jit
    def losses(wrapped, batch):
        emb = jax.vmap(wrapped.model.embed)(batch.observations)
        z = batch.parameters
        if wp:  # the MSE of the parameter head against the flow coordinates
            by_hand = wp * jnp.mean((jax.vmap(wrapped.parameter_head)(emb) - z) ** 2)
        else:  # Gaussian NLL of the residual z - 0 with the predicted log-scale
            log_s = jax.vmap(wrapped.scale_head)(emb)
            by_hand = ws * jnp.mean(0.5 * (z * jnp.exp(-log_s)) ** 2 + log_s)
        return (
            npe_loss(wrapped.model, batch),
            aux_loss(wrapped, batch, parameter_weight=wp, scale_weight=ws),
            by_hand,
            loss(wrapped, batch),
            val_loss(wrapped, batch),
        )

    base, extra, by_hand, total, val = (float(v) for v in losses(wrapped, batch))
    assert extra != 0.0
    assert extra == pytest.approx(by_hand, rel=1e-5)
    assert total == pytest.approx(base + extra, rel=1e-5)
    assert val == pytest.approx(base, rel=1e-6)


def test_fit_with_heads_keeps_only_the_posterior_model(setup):
    ds, _, _ = setup
    post = ConditionalFlowPosterior(
        2, **CONFIG, num_epochs=2, aux_parameter_loss_weight=1.0, aux_scale_loss_weight=0.5
    )
    artifacts = post.fit(ds)
    assert isinstance(post.model, PosteriorModel)
    assert np.all(np.isfinite(artifacts.history["train_loss"]))
    draws = post.sample_posterior([post_block(ds)], 10, seed=0).samples
    assert draws.shape == (10, 2) and np.all((draws >= 0) & (draws <= 1))


def post_block(ds):
    from orrery.sbi import ObservationBlock

    (name,) = ds.preprocessing_metadata
    return ObservationBlock("auxiliary", np.array([0.3, 0.6]), name=name)
