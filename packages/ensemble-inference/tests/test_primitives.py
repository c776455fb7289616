import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from orrery.ensemble import ensemble_init, ensemble_loss, ensemble_step
from orrery.interface import ConfigError


def test_init_stacks_members_and_builds_optimizer_state(linear):
    state = ensemble_init(linear.init, linear.adam, ensemble_size=5, seed=jax.random.PRNGKey(0))
    assert state.params["w"].shape == (5, 2)
    mu = state.opt_state[0].mu["w"]
    assert mu.shape == (5, 2)
    # member e is init_fn(split(seed, E)[e])
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    np.testing.assert_allclose(state.params["w"][3], linear.init(keys[3])["w"])


def test_init_shares_non_array_leaves():
    def init(key):
        return eqx.nn.MLP(1, 1, 4, 1, activation=jnp.tanh, key=key)

    state = ensemble_init(init, optax.sgd(0.1), ensemble_size=3, seed=jax.random.PRNGKey(1))
    assert state.params.layers[0].weight.shape == (3, 4, 1)
    assert state.params.activation is jnp.tanh


def test_init_rejects_bad_ensemble_size(linear):
    with pytest.raises(ConfigError, match="ensemble_size"):
        ensemble_init(linear.init, linear.adam, ensemble_size=0, seed=jax.random.PRNGKey(0))


def test_loss_is_scaled_negative_log_joint(linear):
    x, y = linear.data
    params = {"w": jnp.array([0.3, 0.2])}
    ll, lp = linear.log_joint(params, x, y)
    loss, grads = ensemble_loss(linear.log_joint, prior_weight=0.5, scale=3.0)(params, x, y)
    np.testing.assert_allclose(loss, -3.0 * ll - 0.5 * lp, rtol=1e-6)
    expected = jax.grad(
        lambda p: -3.0 * linear.log_joint(p, x, y)[0] - 0.5 * linear.log_joint(p, x, y)[1]
    )(params)
    np.testing.assert_allclose(grads["w"], expected["w"], rtol=1e-5)


def test_zero_prior_weight_never_uses_the_prior(linear):
    def log_joint(params, x, y):
        return linear.log_joint(params, x, y)[0], jnp.nan  # placeholder prior

    x, y = linear.data
    loss, grads = ensemble_loss(log_joint, prior_weight=0.0)(
        linear.init(jax.random.PRNGKey(0)), x, y
    )
    assert np.isfinite(loss) and np.all(np.isfinite(grads["w"]))


def test_step_reports_losses_before_the_update_and_matches_optax(linear):
    x, y = linear.data
    opt = optax.sgd(1e-3)
    state = ensemble_init(linear.init, opt, ensemble_size=3, seed=jax.random.PRNGKey(2))
    new, losses = ensemble_step(state, x, y, log_joint=linear.log_joint, optimizer=opt, scale=2.0)
    assert losses.shape == (3,)
    loss_fn = ensemble_loss(linear.log_joint, scale=2.0)
    for e in range(3):
        member = {"w": state.params["w"][e]}
        loss, grads = loss_fn(member, x, y)
        np.testing.assert_allclose(losses[e], loss, rtol=1e-6)
        np.testing.assert_allclose(new.params["w"][e], member["w"] - 1e-3 * grads["w"], rtol=1e-5)
