"""Lux: registration, numpyro sites, SVI optimisation, parameter packing, save/load."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer.autoguide import AutoNormal

from orrery.interface import ArtifactError, ConfigError
from orrery.lux import (
    AffineTransform,
    FunctionTransform,
    LinearTransform,
    Lux,
    LuxData,
    LuxModel,
    OutputData,
    PolyFeatureTransform,
    TransformSequence,
)

N, L, P = 60, 2, 8


@pytest.fixture(scope="module")
def truth():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(N, L))
    a = rng.normal(size=(P, L))
    b = rng.normal(size=P)
    y = z @ a.T + b + 0.05 * rng.normal(size=(N, P))
    return z, a, b, y


@pytest.fixture(scope="module")
def model():
    m = Lux(latent_size=L)
    m.register_output("flux", AffineTransform(P))
    return m


def test_register_output_rejects_colons_and_duplicates(model):
    m = Lux(2)
    with pytest.raises(ValueError, match="reserved"):
        m.register_output("a:b", LinearTransform(3))
    m.register_output("flux", LinearTransform(3))
    with pytest.raises(ValueError, match="already"):
        m.register_output("flux", LinearTransform(3))


def test_site_names(truth):
    _z, _, _, y = truth
    m = Lux(L)
    m.register_output("flux", TransformSequence((PolyFeatureTransform(), LinearTransform(P))))
    err_t = FunctionTransform(
        P, lambda e, s: jnp.sqrt(e**2 + s**2), priors={"s": dist.HalfNormal(0.1)}
    )
    m.register_output("label", AffineTransform(3), err_transform=err_t)
    data = LuxData(flux=OutputData(y, err=0.1), label=OutputData(np.zeros((N, 3)), err=0.1))
    tr = numpyro.handlers.trace(numpyro.handlers.seed(m.default_numpyro_model, 0)).get_trace(data)
    assert set(tr) == {
        "latents",
        "flux:1:A",
        "label:A",
        "label:b",
        "label:err:s",
        "obs:flux",
        "obs:label",
    }
    assert tr["obs:flux"]["is_observed"]


def test_optimize_reconstructs_linear_data_default_optimizer(model, truth):
    # regression: upstream's default numpyro.optim.Adam() has no step size and crashes
    _z, _a, _b, y = truth
    data = LuxData(flux=OutputData(y, err=0.05))
    params, res = model.optimize(data, num_steps=2000, rng_key=jax.random.key(0))
    assert set(params) == {"flux", "latents"}
    assert params["flux"]["data"]["b"].shape == (P,)
    pred = model.predict_outputs(params["latents"], params)["flux"]
    assert float(jnp.sqrt(jnp.mean((pred - y) ** 2))) < 0.07
    assert np.isfinite(res.losses).all()


def test_optimize_flat_latent_prior_and_optax_optimizer(model, truth):
    # regression: upstream raises for latents_prior=False
    _, _, _, y = truth
    data = LuxData(flux=OutputData(y, err=0.05))
    params, _ = model.optimize(
        data, 1500, jax.random.key(1), optimizer=optax.adam(1e-2), latents_prior=False
    )
    pred = model.predict_outputs(params["latents"], params)["flux"]
    assert float(jnp.sqrt(jnp.mean((pred - y) ** 2))) < 0.07


def test_optimize_guide_class_and_fixed_pars(model, truth):
    z, a, b, y = truth
    data = LuxData(flux=OutputData(y, err=0.05))
    fixed = {"flux": {"data": {"A": jnp.asarray(a), "b": jnp.asarray(b)}}}
    params, _ = model.optimize(
        data,
        400,
        jax.random.key(2),
        guide=AutoNormal,
        fixed_pars=fixed,
        optimizer=numpyro.optim.Adam(5e-2),
    )
    assert set(params) == {"latents"}  # only what was optimised, as upstream
    # latents found with the true output map held fixed
    assert float(jnp.sqrt(jnp.mean((params["latents"] - z) ** 2))) < 0.1


def test_optimize_uses_a_guide_instance_as_is(model, truth):
    _, _, _, y = truth
    data = LuxData(flux=OutputData(y, err=0.05))
    guide = AutoNormal(model.default_numpyro_model)
    params, res = model.optimize(data, 5, jax.random.key(3), guide=guide)
    assert "latents_auto_loc" in res.params  # the instance's own parameter names
    assert params["latents"].shape == (N, L)


def test_pack_unpack_numpyro_pars_round_trip():
    m = Lux(2)
    m.register_output("flux", TransformSequence((PolyFeatureTransform(), AffineTransform(4))))
    err_t = FunctionTransform(4, lambda e, s: e + s)
    m.register_output("mag", LinearTransform(3), err_transform=err_t)
    nested = {
        "flux": {"data": ({}, {"A": jnp.ones((4, 6)), "b": jnp.zeros(4)})},
        "mag": {"data": {"A": jnp.ones((3, 2))}, "err": {"s": jnp.asarray(0.1)}},
        "latents": jnp.zeros((5, 2)),
    }
    flat = m.pack_numpyro_pars(nested)
    assert set(flat) == {"flux:1:A", "flux:1:b", "mag:A", "mag:err:s", "latents"}
    back = m.unpack_numpyro_pars(flat)
    assert back["flux"]["err"] == {}
    assert m.pack_numpyro_pars(back) == flat
    assert back["mag"]["err"]["s"] is nested["mag"]["err"]["s"]


def test_predict_outputs_and_deprecated_direct_format(model, truth):
    z, a, b, _ = truth
    pars = {"flux": {"data": {"A": a, "b": b}}}
    out = model.predict_outputs(z, pars)
    np.testing.assert_allclose(out["flux"], z @ a.T + b, rtol=1e-5)
    with pytest.warns(DeprecationWarning):
        old = model.predict_outputs(z, {"flux": {"A": a, "b": b}})
    np.testing.assert_allclose(old["flux"], out["flux"])


def test_lux_model_alias_warns():
    with pytest.warns(DeprecationWarning, match="Lux"):
        m = LuxModel(latent_size=3)
    assert isinstance(m, Lux) and m.latent_size == 3


def test_missing_values_are_ignored(model, truth):
    z, a, b, y = truth
    y_bad = y.copy()
    y_bad[::3, 0] = np.nan
    err = np.full_like(y, 0.05)
    err[::3, 0] = np.inf  # zero weight
    data = LuxData(flux=OutputData(y_bad, err=err))
    pars = {"flux": {"data": {"A": jnp.asarray(a), "b": jnp.asarray(b)}}, "latents": z}
    flat = model.pack_numpyro_pars(pars)
    from numpyro.infer.util import log_density

    lp, _ = log_density(model.default_numpyro_model, (data,), {}, flat)
    assert np.isfinite(float(lp))


def test_cannon_bridge_to_lux():
    from orrery.lux import Cannon
    from orrery.lux.datasets import synthetic_survey

    s = synthetic_survey(60, 8, seed=0)
    c = Cannon(3, 8).fit(s.labels, s.spectra, s.ivar)
    m = Lux(3)
    m.register_output("flux", c.to_transform_sequence())
    pars = {"flux": c.get_coeffs_as_transform_pars()}
    pred = m.predict_outputs(s.labels, pars)["flux"]  # raw labels (issue 14)
    np.testing.assert_allclose(pred, c.predict(s.labels), rtol=1e-4, atol=1e-5)
    # regression: upstream transposed the coefficients into the wrong shape
    assert pars["flux"]["data"][1]["A"].shape == (8, c.n_features)


def test_save_load_fitted_lux(tmp_path, truth):
    z, a, b, _ = truth
    m = Lux(L)
    m.register_output("flux", AffineTransform(P, priors={"A": dist.Normal(0.0, 2.0)}))
    m.register_output(
        "poly", TransformSequence((PolyFeatureTransform(degree=2), LinearTransform(3)))
    )
    pars = {
        "flux": {"data": {"A": a, "b": b}},
        "poly": {"data": ({}, {"A": np.ones((3, 6))})},
        "latents": z,
    }
    m.save(tmp_path / "lux", pars)
    m2, p2 = Lux.load(tmp_path / "lux")
    assert list(m2.outputs) == ["flux", "poly"]
    assert float(m2.outputs["flux"][0].priors["A"].scale) == 2.0
    for k in ("flux", "poly"):
        np.testing.assert_allclose(
            m2.predict_outputs(z, p2)[k], m.predict_outputs(z, pars)[k], rtol=1e-6
        )
    custom = Lux(1)
    custom.register_output("x", FunctionTransform(1, lambda z, c: z * c))
    with pytest.raises(ArtifactError, match="function"):
        custom.save(tmp_path / "custom")


def test_bad_names_raise(model):
    with pytest.raises(ConfigError, match="names"):
        model.predict_outputs(jnp.zeros((2, L)), {}, names=["nope"])


def test_custom_model_gets_upstreams_per_output_parameters(truth):
    """setup_numpyro returns, as upstream, {output: {site name: value}} with err names merged.

    A pollux `custom_model(latents, pars, data)` reads e.g. `pars["flux"]["A"]`.
    """
    _, _, _, y = truth
    m = Lux(latent_size=L)
    err_t = FunctionTransform(
        P, lambda e, s: jnp.sqrt(e**2 + s**2), priors={"s": dist.HalfNormal(1.0)}
    )
    m.register_output("flux", AffineTransform(P), err_transform=err_t)
    m.register_output(
        "poly", TransformSequence((PolyFeatureTransform(degree=2), LinearTransform(3)))
    )
    data = LuxData(flux=OutputData(y, err=0.05), poly=np.zeros((N, 3)))
    seen = {}

    def custom_model(latents, pars, data):
        seen.update({k: set(v) for k, v in pars.items()})
        numpyro.factor("a_norm", -jnp.sum(pars["flux"]["A"] ** 2))

    with numpyro.handlers.seed(rng_seed=0):
        m.default_numpyro_model(data, custom_model=custom_model)
    assert seen == {"flux": {"A", "b", "s"}, "poly": {"1:A"}}
