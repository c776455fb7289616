import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from numpyro.optim import Adam

from orrery.ensemble import (
    EnsembleResult,
    EnsembleVI,
    TemperedELBO,
    as_numpyro_optimizer,
    ensemble_predictive,
    ensemble_vi,
)
from orrery.interface import ConfigError

SIGMA, TAU = 0.5, 2.0
KEY = jax.random.PRNGKey(11)
OPTAX_ADAM = optax.adam(0.02)


def model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, TAU).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


def guide(x, y=None):
    loc = numpyro.param("loc", jnp.zeros(2))
    scale = numpyro.param("scale", 0.3 * jnp.ones(2), constraint=dist.constraints.positive)
    numpyro.sample("w", dist.Normal(loc, scale).to_event(1))


def laplace_model(x, y=None):
    w = numpyro.sample("w", dist.Laplace(0.0, TAU).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


def tempered_posterior(x, y, beta):
    """Exact posterior of w when the likelihood is raised to 1/beta (diagonal: x is orthogonal)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    precision = x.T @ x / (beta * SIGMA**2) + np.eye(2) / TAU**2
    cov = np.linalg.inv(precision)
    return cov @ x.T @ y / (beta * SIGMA**2), np.sqrt(np.diag(cov))


@pytest.mark.parametrize("kl_weight", [1.0, 0.5])
def test_vi_members_recover_the_linear_regression_posterior(linear, kl_weight):
    x, y = linear.data
    vi = EnsembleVI(
        model,
        guide,
        Adam(optax.exponential_decay(0.05, 3000, 0.05)),
        ensemble_size=4,
        kl_weight=kl_weight,
        num_particles=8,
    )
    result = vi.run(KEY, 3000, x, y)
    mean, std = tempered_posterior(x, y, kl_weight)
    assert result.params["loc"].shape == (4, 2)
    loc, scale = np.asarray(result.params["loc"]), np.asarray(result.params["scale"])
    # each member is one noisy stochastic-gradient fit: within a quarter of a posterior std...
    np.testing.assert_allclose(loc, np.broadcast_to(mean, loc.shape), atol=0.25 * std.min())
    np.testing.assert_allclose(scale, np.broadcast_to(std, scale.shape), rtol=0.15)
    # ...and the member average agrees within its Monte Carlo standard error
    for fitted, exact in ((loc, mean), (scale, std)):
        stderr = fitted.std(0, ddof=1) / np.sqrt(fitted.shape[0])
        assert np.all(np.abs(fitted.mean(0) - exact) < 4 * stderr + 0.02 * std), (fitted, exact)


def test_each_member_is_numpyro_svi_run_on_its_key(linear):
    x, y = linear.data
    vi = EnsembleVI(model, guide, OPTAX_ADAM, ensemble_size=3)
    result = vi.run(KEY, 20, x, y)
    member_key = jax.random.split(KEY, 3)[2]
    ref = SVI(model, guide, OPTAX_ADAM, Trace_ELBO()).run(member_key, 20, x, y, progress_bar=False)
    np.testing.assert_allclose(result.losses[2], ref.losses, rtol=1e-5)
    np.testing.assert_allclose(result.params["loc"][2], ref.params["loc"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.params["scale"][2], ref.params["scale"], rtol=1e-5)


def test_update_loop_and_split_run_equal_one_run(linear):
    x, y = linear.data
    vi = EnsembleVI(model, guide, OPTAX_ADAM, ensemble_size=3)
    full = vi.run(KEY, 20, x, y)
    state = vi.init(KEY, x, y)
    losses = []
    for _ in range(20):
        state, step_losses = vi.update(state, x, y)
        losses.append(step_losses)
    np.testing.assert_allclose(jnp.stack(losses, 1), full.losses, rtol=1e-5)
    np.testing.assert_allclose(
        vi.get_params(state, x, y)["loc"], full.params["loc"], rtol=1e-5, atol=1e-6
    )

    first = vi.run(KEY, 10, x, y)
    second = vi.run(KEY, 10, x, y, init_state=first)
    assert second.num_steps == 20
    np.testing.assert_allclose(
        jnp.concatenate([first.losses, second.losses], 1), full.losses, rtol=1e-6
    )
    np.testing.assert_allclose(second.params["loc"], full.params["loc"], rtol=1e-6)


def test_nan_member_is_skipped_others_continue(linear):
    x, y = linear.data
    vi = EnsembleVI(model, guide, OPTAX_ADAM, ensemble_size=3)
    state = vi.init(KEY, x, y)
    optim_state = jax.tree.map(
        lambda a: a.at[1].set(jnp.nan) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        state.optim_state,
    )
    res = vi.run(KEY, 20, x, y, init_state=state._replace(optim_state=optim_state))
    clean = vi.run(KEY, 20, x, y, init_state=state)
    assert res.skipped_steps.tolist() == [0, 20, 0]
    idx = jnp.array([0, 2])
    np.testing.assert_allclose(res.params["loc"][idx], clean.params["loc"][idx], rtol=1e-6)


def test_tempered_elbo_matches_numpyro_elbos(linear):
    x, y = linear.data
    params = {"loc": jnp.array([0.5, -1.0]), "scale": jnp.array([0.2, 0.1])}
    key = jax.random.PRNGKey(0)
    analytic = TemperedELBO(1.0).loss(key, params, model, guide, x, y)
    np.testing.assert_allclose(
        analytic, TraceMeanField_ELBO().loss(key, params, model, guide, x, y), rtol=1e-6
    )
    mc = TemperedELBO(1.0, analytic_kl=False).loss(key, params, model, guide, x, y)
    np.testing.assert_allclose(mc, Trace_ELBO().loss(key, params, model, guide, x, y), rtol=1e-6)
    # no closed form for KL(Normal || Laplace): the analytic path falls back to Monte Carlo
    laplace = TemperedELBO(0.3).loss(key, params, laplace_model, guide, x, y)
    laplace_mc = TemperedELBO(0.3, analytic_kl=False).loss(key, params, laplace_model, guide, x, y)
    np.testing.assert_allclose(laplace, laplace_mc, rtol=1e-6)


def test_tempered_elbo_weights_only_the_kl(linear):
    x, y = linear.data
    params = {"loc": jnp.array([0.5, -1.0]), "scale": jnp.array([0.2, 0.1])}
    key = jax.random.PRNGKey(1)
    loss = {b: TemperedELBO(b).loss(key, params, model, guide, x, y) for b in (0.0, 1.0, 2.0)}
    kl = loss[1.0] - loss[0.0]
    q = dist.Normal(params["loc"], params["scale"])
    expected_kl = jnp.sum(dist.kl_divergence(q, dist.Normal(0.0, TAU)))
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-5)
    np.testing.assert_allclose(loss[2.0], loss[0.0] + 2 * kl, rtol=1e-5)


def test_ensemble_predictive_draws_from_every_member(linear):
    x, y = linear.data
    result = ensemble_vi(
        model, guide, ensemble_size=3, num_epochs=20, data=(x, y), seed=KEY, optimizer=OPTAX_ADAM
    )
    assert isinstance(result, EnsembleResult)
    params, losses = result
    assert losses.shape == (3, 20)
    draws = ensemble_predictive(
        model, guide, params, x, num_samples=400, seed=5, return_sites=["w", "y"]
    )
    assert draws["y"].shape == (3, 400, y.shape[0]) and draws["w"].shape == (3, 400, 2)
    err = np.abs(draws["w"].mean(1) - params["loc"])
    assert np.all(err < 5 * params["scale"] / np.sqrt(400))


def test_optimizer_detection_and_validation():
    numpyro_adam = Adam(1e-2)
    assert as_numpyro_optimizer(numpyro_adam) is numpyro_adam
    wrapped = as_numpyro_optimizer(OPTAX_ADAM)
    assert callable(wrapped.init_fn) and callable(wrapped.get_params)
    with pytest.raises(ConfigError, match="optimizer"):
        as_numpyro_optimizer("adam")
    with pytest.raises(ConfigError, match="kl_weight"):
        EnsembleVI(model, guide, numpyro_adam, kl_weight=-1.0)
    with pytest.raises(ConfigError, match="kl_weight"):
        EnsembleVI(model, guide, numpyro_adam, kl_weight="1")
    with pytest.raises(ConfigError, match="num_epochs"):
        EnsembleVI(model, guide, numpyro_adam, ensemble_size=2).run(KEY, 0, None, None)


def test_autoguide_members_start_apart_and_guide_stays_reusable(linear):
    from numpyro.infer.autoguide import AutoNormal

    x, y = linear.data
    auto = AutoNormal(model)
    vi = EnsembleVI(model, auto, OPTAX_ADAM, ensemble_size=3)
    state = vi.init(jax.random.key(0), x, y)  # a typed key works too
    locs = vi.get_params(state, x, y)["w_auto_loc"]
    assert locs.shape == (3, 2)
    assert float(jnp.min(jnp.abs(locs[0] - locs[1]))) > 1e-3  # per-member initial values
    # the shared guide holds no tracers: it can be traced again
    state, losses = vi.update(state, x, y)
    assert losses.shape == (3,) and bool(jnp.all(jnp.isfinite(losses)))


def _three_site_model(x, y=None):
    # sites declared in a different order than their sorted names (w, b, s -> b, s, w)
    w = numpyro.sample("w", dist.Normal(0.0, TAU).expand([2]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(x @ w + b, s), obs=y)


def test_flat_latent_autoguide_members_are_svi_run_on_their_keys(linear):
    """AutoContinuous guides pack all latents in one vector: every member must use the
    layout of the guide it is updated with, so each member equals ``SVI.run`` on its key
    (the prototype built inside vmap orders the sites differently from an eager one)."""
    from numpyro.infer.autoguide import AutoDiagonalNormal

    x, y = linear.data
    keys = jax.random.split(KEY, 2)
    result = EnsembleVI(
        _three_site_model, AutoDiagonalNormal(_three_site_model), OPTAX_ADAM, ensemble_size=2
    ).run(KEY, 10, x, y)
    for e in range(2):
        ref = SVI(
            _three_site_model, AutoDiagonalNormal(_three_site_model), OPTAX_ADAM, Trace_ELBO()
        ).run(keys[e], 10, x, y, progress_bar=False)
        np.testing.assert_allclose(result.losses[e], ref.losses, rtol=1e-4)
        for name in ("auto_loc", "auto_scale"):
            np.testing.assert_allclose(
                result.params[name][e], ref.params[name], rtol=1e-4, atol=1e-6
            )
