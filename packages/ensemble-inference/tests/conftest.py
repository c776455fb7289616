"""Shared fixtures: tiny problems so the whole suite compiles a handful of programs only."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import optax
import pytest

SIGMA = 0.5
TAU = 2.0
W_TRUE = (0.7, -1.3)


def _design(n=40, seed=0):
    """An orthogonal design (intercept + centred slope) so mean-field posteriors are exact."""
    t = jnp.linspace(-1.0, 1.0, n)
    x = jnp.stack([jnp.ones_like(t), t], axis=1)
    noise = jax.random.normal(jax.random.PRNGKey(seed), (n,))
    return x, x @ jnp.array(W_TRUE) + SIGMA * noise


def _init_linear(key):
    return {"w": jax.random.normal(key, (2,))}


def _log_joint_linear(params, x, y):
    resid = y - x @ params["w"]
    loglik = -0.5 * jnp.sum(resid**2) / SIGMA**2
    logprior = -0.5 * jnp.sum(params["w"] ** 2) / TAU**2
    return loglik, logprior


# One optimizer instance for the whole session, so jitted runners hit the cache.
_ADAM = optax.adam(0.05)


@pytest.fixture(scope="session")
def linear():
    """Bayesian linear regression with known noise SIGMA and a N(0, TAU^2) prior on w."""
    return SimpleNamespace(
        data=_design(),
        init=_init_linear,
        log_joint=_log_joint_linear,
        adam=_ADAM,
        sigma=SIGMA,
        tau=TAU,
    )


@pytest.fixture
def x64():
    """Run one test in float64 and restore the default afterwards."""
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)
