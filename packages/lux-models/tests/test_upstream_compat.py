"""pollux code on orrery.lux: one test per upstream behaviour, written as a pollux user calls it.

Expected numbers come from closed forms or are worked out by hand in the comments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer.util import log_density

import orrery.lux as plx
from orrery.lux import (
    AbstractPreprocessor,
    AdditiveOffsetTransform,
    AffineTransform,
    ConcatenateTransform,
    FunctionTransform,
    LinearTransform,
    Lux,
    LuxData,
    NoOpTransform,
    NullPreprocessor,
    OffsetTransform,
    OutputData,
    ParameterBlock,
    PolluxData,
    PolyFeatureTransform,
    ShapeSpec,
    ShiftScalePreprocessor,
    TransformSequence,
)
from orrery.lux._poly import poly_features

RNG = np.random.default_rng(0)


def _obs_log_prob(data):
    """log p of the observation for fixed parameters (prediction 0, s = 0.1)."""
    m = Lux(latent_size=1)
    m.register_output(
        "y",
        LinearTransform(output_size=1),
        err_transform=FunctionTransform(
            output_size=1,
            transform=lambda err, s: jnp.sqrt(err**2 + s**2),
            priors={"s": dist.HalfNormal(1.0)},
        ),
    )
    pars = {"latents": jnp.zeros((1, 1)), "y:A": jnp.zeros((1, 1)), "y:err:s": jnp.asarray(0.1)}
    _, tr = log_density(m.default_numpyro_model, (data,), {}, pars)
    site = tr["obs:y"]
    return float(site["fn"].log_prob(site["value"]))


# ------------------------------------------------------------------ silent wrong results
def test_missing_err_is_zero_measurement_error():
    od = OutputData(np.array([[0.3]]))
    assert od.err.shape == () and float(od.err) == 0.0  # upstream's scalar zero
    assert od[0].err.shape == () and not od.has_err
    # sqrt(0² + 0.1²) = 0.1, not sqrt(1² + 0.1²) = 1.005
    assert _obs_log_prob(PolluxData(y=od)) == pytest.approx(
        float(dist.Normal(0, 0.1).log_prob(0.3))
    )
    sd = np.sqrt(0.2**2 + 0.1**2)
    assert _obs_log_prob(PolluxData(y=OutputData([[0.3]], err=0.2))) == pytest.approx(
        float(dist.Normal(0, sd).log_prob(0.3))
    )


def test_err_transform_recovers_intrinsic_scatter_without_err():
    """End to end: the fitted s matches an injected scatter of 0.05 within 10%."""
    n, p = 100, 8
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 1))
    a = rng.normal(size=(p, 1))
    b = rng.normal(size=p)
    y = z @ a.T + b + rng.normal(0, 0.05, size=(n, p))
    m = Lux(latent_size=1)
    m.register_output(
        "flux",
        AffineTransform(output_size=p),
        err_transform=FunctionTransform(
            output_size=p,
            transform=lambda err, s: jnp.sqrt(err**2 + s**2),
            priors={"s": dist.HalfNormal(1.0)},
        ),
    )
    # the latents are known (labels), so the MAP scatter is not biased by fitting them
    params, _ = m.optimize(
        PolluxData(flux=OutputData(y)),
        num_steps=1000,
        rng_key=jax.random.PRNGKey(0),
        optimizer=numpyro.optim.Adam(0.05),
        fixed_pars={"latents": jnp.asarray(z)},
    )
    s = float(params["flux"]["err"]["s"])
    assert s == pytest.approx(0.05, rel=0.10)


def test_output_data_processed_flag():
    pre = ShiftScalePreprocessor(loc=10.0, scale=2.0)
    od = OutputData(np.array([12.0, 14.0]), err=1.0, preprocessor=pre)
    assert od.processed is False
    once = od.preprocess()
    # (12 - 10) / 2 = 1, (14 - 10) / 2 = 2; err 1 / 2 = 0.5
    assert once.processed and once.data[:, 0].tolist() == [1.0, 2.0]
    assert once.err[:, 0].tolist() == [0.5, 0.5]
    assert once.preprocess() is once  # a no-op, not a second transform
    with pytest.raises(ValueError, match="not processed"):
        od.unprocess()
    back = once.unprocess()
    assert back.processed is False and back.data[:, 0].tolist() == [12.0, 14.0]
    assert od.data[:, 0].tolist() == [12.0, 14.0]  # the original is untouched


def test_len_of_data_is_number_of_objects():
    d = LuxData(flux=np.ones((7, 3)), label=np.ones((7, 2)))
    assert len(d) == 7 and len(d[2:5]) == 3
    assert list(d.keys()) == ["flux", "label"] and len(d.keys()) == 2


# ------------------------------------------------------------------ behaviours
def test_apply_calls_the_function_positionally():
    def f(z, A, /):  # positional-only, as upstream allows
        return A @ z

    a = jnp.arange(6.0).reshape(3, 2)
    z = jnp.ones((4, 2))
    t = FunctionTransform(
        output_size=3, transform=f, shapes={"A": ShapeSpec(("output_size", "latent_size"))}
    )
    np.testing.assert_allclose(t.apply(z, A=a), z @ a.T)

    def g(z, A):
        return A @ z

    # upstream's idiom: vmap the function yourself and switch off the automatic vmap
    tv = FunctionTransform(
        output_size=3,
        transform=jax.vmap(g, in_axes=(0, None)),
        shapes={"A": ShapeSpec(("output_size", "latent_size"))},
        vmap=False,
    )
    # row 0 of z @ A.T with A = [[0, 1], [2, 3], [4, 5]] and z = [1, 1]: [1, 5, 9]
    assert tv.apply(z, A=a)[0].tolist() == [1.0, 5.0, 9.0]


def test_expanded_priors_are_prior_expand():
    user = dist.Normal(0.5, 2.0)
    t = LinearTransform(output_size=3, priors={"A": user})
    pri = t.get_expanded_priors(latent_size=2)["A"]
    assert pri.batch_shape == (3, 2) and pri.event_shape == ()
    assert pri.base_dist is user
    x = jnp.ones((3, 2))
    assert pri.log_prob(x).shape == (3, 2)  # elementwise
    # the numpyro log density is unchanged: the sum of the elementwise terms
    m = Lux(latent_size=2)
    m.register_output("y", LinearTransform(output_size=3, priors={"A": user}))
    data = LuxData(y=OutputData(np.zeros((1, 3)), err=1.0))
    pars = {"latents": jnp.zeros((1, 2)), "y:A": x}
    lp, _ = log_density(m.default_numpyro_model, (data,), {}, pars)
    expected = (
        dist.Normal(0.5, 2.0).log_prob(1.0) * 6
        + dist.Normal(0.0, 1.0).log_prob(0.0) * 2
        + dist.Normal(0.0, 1.0).log_prob(0.0) * 3
    )
    assert float(lp) == pytest.approx(float(expected), rel=1e-6)


def test_bias_in_upstream_column_shape():
    col = ShapeSpec(("output_size", "one"))
    t = AffineTransform(output_size=3, shapes={"b": col})
    assert t.get_expanded_priors(2)["b"].batch_shape == (3, 1)
    a = jnp.ones((3, 2))
    b = jnp.array([[1.0], [2.0], [3.0]])
    z = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    # A z + b = [2 + 1, 2 + 2, 2 + 3] and [1, 2, 3]
    np.testing.assert_allclose(t.apply(z, A=a, b=b), [[3, 4, 5], [1, 2, 3]])
    np.testing.assert_allclose(
        OffsetTransform(output_size=3).apply(z[:, :1] * 0 + jnp.zeros((2, 3)), b=b),
        [[1, 2, 3], [1, 2, 3]],
    )


def test_per_object_offset_recipe():
    n = 4
    z = jnp.arange(8.0).reshape(n, 2)
    off = jnp.array([10.0, 20.0, 30.0, 40.0])
    for shapes in (None, {"b": ShapeSpec(("output_size", "one"))}):
        t = OffsetTransform(output_size=n, vmap=False, shapes=shapes)
        b = off if shapes is None else off[:, None]
        # every object's row is shifted by its own offset
        np.testing.assert_allclose(t.apply(z, b=b), z + off[:, None])
    m = Lux(latent_size=2)
    m.register_output("x", OffsetTransform(output_size=n, vmap=False))
    out = m.predict_outputs(z, {"x": {"data": {"b": off}}})
    np.testing.assert_allclose(out["x"], z + off[:, None])


def _offset_recipe(n_stars: int) -> TransformSequence:
    """Upstream's per-object offset recipe (its integration test ``test_infer_distance``)."""
    return TransformSequence(
        transforms=(
            LinearTransform(output_size=5, priors={"A": dist.Normal()}),
            OffsetTransform(output_size=n_stars, vmap=False, priors={"b": dist.Normal(11.0, 3.0)}),
        )
    )


def test_offset_recipe_recovers_offsets_at_the_noise_level():
    """The fitted per-object offsets come back as upstream's ``(n, 1)`` column.

    Before, ``b`` came back as ``(n,)``, so the user's ``b - true_dm`` (``true_dm``
    of shape ``(n, 1)``, as in upstream's script) broadcast to an ``(n, n)`` matrix
    whose spread is sqrt(3² + 3²) ≈ 4.2 whatever the fit: the silent wrong answer.
    Here the linear map and the latents are known, so the MAP offset of object n is
    the weighted mean of its 5 label residuals (the N(11, 3) prior shifts it by
    < 0.1%): its error has standard deviation s_n = 1 / sqrt(Σ_k 1/σ_nk²), the
    errors' scale, and the pulls (b - true_dm) / s_n have unit spread.
    """
    n, k, latent = 512, 5, 3
    keys = jax.random.split(jax.random.key(123), 5)
    z = jax.random.normal(keys[0], (n, latent))
    a = jax.random.normal(keys[1], (k, latent))
    true_dm = 11.0 + 3.0 * jax.random.normal(keys[2], (n, 1))
    err = jax.random.uniform(keys[3], (n, k), minval=0.01, maxval=0.1)
    label = z @ a.T + true_dm + err * jax.random.normal(keys[4], (n, k))
    model = Lux(latent_size=latent)
    model.register_output("label", _offset_recipe(n))
    opt_pars, _ = model.optimize(
        PolluxData(label=OutputData(label, err=err)),
        num_steps=1500,
        rng_key=jax.random.PRNGKey(0),
        # large steps reach offsets ~10 away; the decay lets Adam settle at the optimum
        optimizer=optax.adam(optax.exponential_decay(0.2, 200, 0.3)),
        fixed_pars={"latents": z, "label": {"data": [{"A": a}, {}]}},
    )
    b = opt_pars["label"]["data"][1]["b"]
    assert b.shape == (n, 1)
    d_dm = b - true_dm  # the user's expression: elementwise only with the column layout
    assert d_dm.shape == (n, 1)
    s_n = 1.0 / jnp.sqrt(jnp.sum(err**-2.0, axis=1, keepdims=True))
    pulls = d_dm / s_n
    assert abs(float(jnp.mean(pulls))) < 0.2  # 4.4 standard errors of the mean
    assert float(jnp.std(pulls)) == pytest.approx(1.0, abs=0.10)
    # the prior's expansion has upstream's (output_size, 1) batch shape
    priors = _offset_recipe(n).get_expanded_priors(latent_size=latent, data_size=n)
    assert priors["1:b"].batch_shape == (n, 1)


def _label_flux_data(n=80, seed=5):
    """Labels = first two latents, flux linear in four latents (upstream's iterative tutorial)."""
    keys = jax.random.split(jax.random.key(seed), 4)
    z = jax.random.normal(keys[0], (n, 4))
    a = jnp.eye(2, 4)
    b = jax.random.normal(keys[1], (12, 4))
    label = z @ a.T + 0.05 * jax.random.normal(keys[2], (n, 2))
    flux = z @ b.T + 0.05 * jax.random.normal(keys[3], (n, 12))
    data = PolluxData(label=OutputData(label, err=0.05), flux=OutputData(flux, err=0.05))
    model = Lux(latent_size=4)
    model.register_output("label", LinearTransform(output_size=2))
    model.register_output("flux", LinearTransform(output_size=12))
    return model, data, {"latents": z, "label": a, "flux": b}


def test_predict_labels_from_flux_alone():
    """A registered output the data do not hold is skipped (was: `no output named 'label'`)."""
    model, data, truth = _label_flux_data()
    fixed = {"label": {"data": {"A": truth["label"]}}, "flux": {"data": {"A": truth["flux"]}}}
    flux_only = PolluxData(flux=data["flux"])
    res = model.optimize_iterative(
        flux_only, blocks=["latents"], fixed_pars=fixed, max_cycles=50, tol=1e-6, progress=False
    )
    pred = model.predict_outputs(res.params["latents"], res.params)
    # twelve pixels at noise 0.05 pin the latents; the labels follow from them
    rms = float(jnp.sqrt(jnp.mean((pred["label"] - data["label"].data) ** 2)))
    assert rms < 0.1
    assert res.converged and res.n_cycles == 2  # exact solve, then no change
    params, _ = model.optimize(
        flux_only,
        num_steps=300,
        rng_key=jax.random.PRNGKey(0),
        optimizer=numpyro.optim.Adam(0.05),
        fixed_pars=fixed,
    )
    assert set(params) == {"latents"}  # only what was optimised, as upstream
    pred = model.predict_outputs(params["latents"], {**fixed, **params})
    assert float(jnp.sqrt(jnp.mean((pred["label"] - data["label"].data) ** 2))) < 0.1
    with pytest.raises(ValueError, match="do not hold"):
        model.optimize_iterative(flux_only, blocks=["label"], fixed_pars=fixed, progress=False)


def test_losses_per_cycle_is_upstreams_half_chi2():
    """`losses_per_cycle` is ½ Σ ((pred - y) / err)² over the outputs held, as upstream."""
    model, data, _ = _label_flux_data()
    res = model.optimize_iterative(data, max_cycles=60, tol=1e-3, progress=False)
    pred = model.predict_outputs(res.params["latents"], res.params)
    chi2 = sum(
        0.5 * float(jnp.sum(((pred[k] - data[k].data) / 0.05) ** 2)) for k in ("label", "flux")
    )
    assert res.losses_per_cycle[-1] == pytest.approx(chi2, rel=1e-5)
    # the log joint is still there, and differs by the priors and normalisations
    assert len(res.neg_log_joint_per_cycle) == res.n_cycles
    assert res.neg_log_joint_per_cycle[-1] != pytest.approx(chi2, rel=1e-2)
    # upstream's rule: the first cycle never counts, then |Δ| / |previous| < tol
    losses = np.asarray(res.losses_per_cycle)
    rel = np.abs(np.diff(losses)) / np.abs(losses[:-1])
    assert res.converged and len(losses) >= 2
    assert rel[-1] < 1e-3 and np.all(rel[:-1] >= 1e-3)
    # no errors given: unit weights
    bare = PolluxData(label=OutputData(data["label"].data), flux=OutputData(data["flux"].data))
    fixed = {"latents": res.params["latents"], "label": res.params["label"]}
    r2 = model.optimize_iterative(bare, blocks=["flux"], fixed_pars=fixed, progress=False)
    pred = model.predict_outputs(r2.params["latents"], r2.params)
    chi2 = sum(0.5 * float(jnp.sum((pred[k] - bare[k].data) ** 2)) for k in ("label", "flux"))
    assert r2.losses_per_cycle[-1] == pytest.approx(chi2, rel=1e-5)


# ------------------------------------------------------------------ pollux 0.1.0 (release) API
def test_predict_outputs_takes_both_argument_orders():
    """Mirrored `(latents, pars)` and release `(pars, latents=None)`: read from types, no swap."""
    model, _, truth = _label_flux_data(n=10)
    z = truth["latents"]
    pars = {"label": {"data": {"A": truth["label"]}}, "flux": {"data": {"A": truth["flux"]}}}
    want = model.predict_outputs(z, pars)
    for got in (
        model.predict_outputs(pars, z),
        model.predict_outputs(pars, latents=z),
        model.predict_outputs({**pars, "latents": z}),
        model.predict_outputs(latents=z, pars=pars),
        model.predict_outputs(z, pars, "flux"),
        model.predict_outputs(pars, z, names=["flux"]),
    ):
        np.testing.assert_array_equal(got["flux"], want["flux"])
    with pytest.raises(TypeError, match="one parameter dict"):
        model.predict_outputs(pars, pars)
    with pytest.raises(TypeError, match="one parameter dict"):
        model.predict_outputs(z, z)
    with pytest.raises(TypeError, match="given twice"):
        model.predict_outputs(z, pars, latents=z)
    with pytest.raises(ValueError, match="no 'latents' entry"):
        model.predict_outputs(pars)


def test_release_api_names():
    model, data, truth = _label_flux_data(n=10)
    assert issubclass(plx.LVM, Lux) and plx.LVM(latent_size=2).latent_size == 2
    assert issubclass(TransformSequence, plx.AbstractMultiTransform)
    assert issubclass(ConcatenateTransform, plx.AbstractMultiTransform)
    # output_pars drops the latents and per-object parameters (shape follows data_size)
    per_obj = Lux(latent_size=4)
    per_obj.register_output(
        "mag",
        FunctionTransform(
            1,
            lambda z, c: z[:, :1] + c[:, None],
            shapes={"c": ShapeSpec(("data_size",))},
            vmap=False,
        ),
    )
    per_obj.register_output("flux", LinearTransform(output_size=12))
    p = {
        "latents": truth["latents"],
        "mag": {"data": {"c": jnp.ones(10)}},
        "flux": {"data": {"A": truth["flux"]}},
    }
    assert per_obj.per_object_param_names() == {"latents", "mag:c"}
    kept = per_obj.output_pars(p)
    assert "latents" not in kept and "c" not in kept.get("mag", {}).get("data", {})
    np.testing.assert_array_equal(kept["flux"]["data"]["A"], truth["flux"])
    # ScatterTransform: sqrt(err² + s²), s ~ HalfNormal(1) of shape (output_size,)
    st = plx.ScatterTransform(output_size=3)
    assert st.get_expanded_priors(3)["s"].batch_shape == (3,)
    assert st.apply(jnp.full((1, 3), 3.0), s=jnp.full(3, 4.0)).tolist() == [[5.0] * 3]
    # default_blocks, block_options, result.blocks
    blocks = plx.default_blocks(model, data)
    assert [(b.name, b.optimizer) for b in blocks] == [
        ("latents", "least_squares"),
        ("label:data", "least_squares"),
        ("flux:data", "least_squares"),
    ]
    res = model.optimize_iterative(
        data,
        max_cycles=2,
        progress=False,
        block_options={"flux:data": {"optimizer": None, "num_steps": 3}},
    )
    assert [(b.name, b.optimizer, b.num_steps) for b in res.blocks][-1] == ("flux:data", None, 3)
    with pytest.raises(ValueError, match="did you mean 'flux:data'"):
        model.optimize_iterative(data, progress=False, block_options={"flux:dat": {}})
    # optimize(progress=..., initial_params=...): starting at the truth, zero steps away
    params, res = model.optimize(
        data,
        num_steps=1,
        rng_key=jax.random.PRNGKey(0),
        optimizer=numpyro.optim.Adam(1e-9),
        progress=False,
        initial_params={"latents": truth["latents"], "flux": {"data": {"A": truth["flux"]}}},
    )
    np.testing.assert_allclose(params["flux"]["data"]["A"], truth["flux"], atol=1e-6)


def test_parameter_block_upstream_fields_and_svi_default():
    blk = ParameterBlock("b", "x:data", None, {"step_size": 0.05}, 7)
    assert (blk.optimizer, blk.optimizer_kwargs, blk.num_steps) == (None, {"step_size": 0.05}, 7)
    assert ParameterBlock("latents", "latents").optimizer is None

    # y = c z with z fixed; MAP of c under Normal(0, 10): Σzy/σ² / (Σz²/σ² + 1/100)
    z = np.linspace(-1, 1, 11)[:, None]
    y = 2.0 * z
    m = Lux(latent_size=1)
    m.register_output(
        "x", FunctionTransform(1, lambda z, c: c * z, priors={"c": dist.Normal(0.0, 10.0)})
    )
    data = PolluxData(x=OutputData(y, err=0.1))
    sz = float(np.sum(z * z)) / 0.01
    expected = 2.0 * sz / (sz + 0.01)
    for opt, kw in (
        (None, {"step_size": 0.05}),
        (numpyro.optim.Adam, {"step_size": 0.05}),
        (optax.adam(0.05), {}),
    ):
        res = m.optimize_iterative(
            data,
            blocks=[ParameterBlock("c", "x:data", opt, kw, 600)],
            fixed_pars={"latents": jnp.asarray(z)},
            initial_params={"x": {"data": {"c": jnp.asarray(0.0)}}},
            max_cycles=1,
            progress=False,
        )
        assert float(res.params["x"]["data"]["c"]) == pytest.approx(expected, abs=2e-3)


def test_predict_outputs_accepts_flat_and_list_forms():
    a = jnp.asarray(RNG.normal(size=(3, 6)))
    seq = TransformSequence((PolyFeatureTransform(degree=2), LinearTransform(output_size=3)))
    m = Lux(latent_size=2)
    m.register_output("flux", seq)
    z = jnp.asarray(RNG.normal(size=(5, 2)))
    want = poly_features(z, 2) @ a.T
    for data in ({"1:A": a}, ({}, {"A": a}), [{}, {"A": a}], [{"A": a}]):
        np.testing.assert_allclose(m.predict_outputs(z, {"flux": {"data": data}})["flux"], want)
    np.testing.assert_allclose(m.predict_outputs(z, {"flux:1:A": a})["flux"], want)

    base = LinearTransform(output_size=3)
    m2 = Lux(latent_size=2)
    m2.register_output("phot", AdditiveOffsetTransform(base, dist.Normal(11.0, 3.0)))
    a2 = jnp.ones((3, 2))
    off = jnp.arange(5.0)
    got = m2.predict_outputs(z, {"phot": {"data": {"base:A": a2, "offset": off}}})["phot"]
    np.testing.assert_allclose(got, z @ a2.T + off[:, None], rtol=1e-6)


def test_pack_unpack_tolerance():
    a = jnp.ones((3, 6))
    seq = TransformSequence((PolyFeatureTransform(degree=2), LinearTransform(output_size=3)))
    assert set(seq.pack_pars(({}, {"A": a}, {}))) == {"1:A"}  # a trailing empty entry
    assert seq.pack_pars(({},), ignore_missing=True) == {}  # missing, allowed
    with pytest.raises(ValueError, match="missing"):
        seq.pack_pars(({},))
    assert seq.unpack_pars({}, ignore_missing=True) == ({}, {})
    with pytest.raises(ValueError, match="missing"):
        seq.unpack_pars({})
    single = LinearTransform(output_size=3)
    assert single.pack_pars({"A": a, "note": 1})["note"] == 1  # identity, as upstream
    m = Lux(latent_size=2)
    m.register_output("flux", seq)
    assert set(m.pack_numpyro_pars({"flux": {"data": [{"A": a}]}, "latents": 0})) == {
        "flux:1:A",
        "latents",
    }


def test_invalid_guide_is_a_type_error_before_any_work():
    m = Lux(latent_size=1)
    m.register_output("x", LinearTransform(output_size=1))
    with pytest.raises(TypeError, match="guide must be"):
        m.optimize(LuxData(x=np.zeros((2, 1))), 10, jax.random.PRNGKey(0), guide="AutoDelta")


def test_upstream_names():
    assert issubclass(PolluxData, LuxData) and plx.LuxModel is not None
    with pytest.raises(ValueError, match="must be an OutputData"):
        PolluxData(flux=np.ones((3, 2)))
    with pytest.raises(ValueError, match="objects"):
        PolluxData(flux=OutputData(np.ones((3, 2))), label=OutputData(np.ones((4, 1))))
    assert type(PolluxData(flux=OutputData(np.ones((3, 2))))[1:]) is PolluxData
    x = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    p = ShiftScalePreprocessor.from_data(x, axis=0)
    # mean 3, population std sqrt(2)
    assert float(p.loc[0]) == 3.0 and float(p.scale[0]) == pytest.approx(np.sqrt(2.0))
    q = ShiftScalePreprocessor.from_data_percentiles(
        x, loc_percentile=50, scale_percentiles=(25, 75)
    )
    # median 3; quartiles 2 and 4 -> half span 1
    assert float(q.loc[0]) == 3.0 and float(q.scale[0]) == 1.0
    assert isinstance(p, AbstractPreprocessor) and isinstance(
        NullPreprocessor(), AbstractPreprocessor
    )
    assert PolyFeatureTransform(degree=2).get_output_size(3) == 10  # C(5, 2)

    d = PolluxData(label=OutputData(x, preprocessor=q))
    pp = d.preprocess()
    assert pp["label"].processed
    back = pp.unprocess()
    assert isinstance(back, LuxData) and back["label"].data[:, 0].tolist() == [1, 2, 3, 4, 5]
    pred = d.unprocess({"label": jnp.zeros((2, 1)), "other": jnp.ones((2, 1))}, ignore_missing=True)
    assert list(pred) == ["label"] and pred["label"].data[:, 0].tolist() == [3.0, 3.0]

    m = Lux(latent_size=2)
    m.register_output("flux", AffineTransform(output_size=3))
    assert m.names_flat == ("latents", "flux:A", "flux:b")
    assert m.names_nested["flux"] == {"data": ("A", "b"), "err": ()}


def test_concatenate_transform_splits_the_input():
    """Upstream's `ConcatenateTransform(transforms=..., input_sizes=...)`."""
    a0 = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    a1 = jnp.array([[3.0]])
    t = ConcatenateTransform(
        transforms=(LinearTransform(output_size=2), LinearTransform(output_size=1)),
        input_sizes=(2, 1),
    )
    assert t.output_size == 3 and t.input_sizes == (2, 1)
    assert t.names_flat == ("0:A", "1:A") and t.names_nested == (("A",), ("A",))
    z = jnp.array([[1.0, 3.0, 5.0]])
    # [a0 @ (1, 3), a1 @ (5,)] = [1, 6, 15]
    want = [[1.0, 6.0, 15.0]]
    assert t.apply(z, **{"0:A": a0, "1:A": a1}).tolist() == want  # flat keywords
    assert t.apply(z, {"A": a0}, {"A": a1}).tolist() == want  # positional dicts
    assert ConcatenateTransform((NoOpTransform(), NoOpTransform()), (1, 2)).output_size == 3
    priors = t.get_expanded_priors(latent_size=3)
    assert priors["0:A"].batch_shape == (2, 2) and priors["1:A"].batch_shape == (1, 1)
    packed = t.pack_pars(({"A": a0}, {"A": a1}))
    assert set(packed) == {"0:A", "1:A"}
    assert [set(d) for d in t.unpack_pars(packed)] == [{"A"}, {"A"}]
    assert t.get_output_size(3) == 3
    for bad in (
        lambda: ConcatenateTransform((), ()),
        lambda: ConcatenateTransform((LinearTransform(output_size=2),), (2, 1)),
        lambda: t.get_expanded_priors(latent_size=4),
        lambda: t.get_output_size(2),
        lambda: t.apply(z, {"A": a0}),
        lambda: t.apply(z, **{"7:A": a0}),
    ):
        with pytest.raises(ValueError):
            bad()
    # nested in a sequence: names "0:{i}:A", the next transform sees the summed output
    seq = TransformSequence((t, LinearTransform(output_size=4)))
    sp = seq.get_expanded_priors(latent_size=3)
    assert set(sp) == {"0:0:A", "0:1:A", "1:A"} and sp["1:A"].batch_shape == (4, 3)
    a2 = jnp.ones((4, 3))
    out = seq.apply(z, **{"0:0:A": a0, "0:1:A": a1, "1:A": a2})
    assert out.tolist() == [[22.0] * 4]
    # as a Lux output, with the flat or the nested form
    m = Lux(latent_size=3)
    m.register_output("both", t)
    assert m.names_flat == ("latents", "both:0:A", "both:1:A")
    for data in ({"0:A": a0, "1:A": a1}, ({"A": a0}, {"A": a1})):
        assert m.predict_outputs(z, {"both": {"data": data}})["both"].tolist() == want
    # as upstream, unpack_pars skips a name without a valid index; entry points refuse it
    assert [set(d) for d in t.unpack_pars({**packed, "9:A": a0})] == [{"A"}, {"A"}]
    with pytest.raises(ValueError, match="did you mean"):
        m.predict_outputs(z, {"both": {"data": {"0:A": a0, "1:A": a1, "1:AA": a1}}})


def test_smaller_upstream_behaviours():
    seq = TransformSequence((PolyFeatureTransform(degree=2), LinearTransform(output_size=8)))
    assert seq.names_nested == ((), ("A",)) and seq.names_flat == ("1:A",)
    # a parameter-free transform in the sequence takes an empty entry
    a = jnp.ones((8, 6))
    assert set(seq.pack_pars([{}, {"A": a}])) == {"1:A"}
    with pytest.raises(ValueError, match="requires data_size"):
        AdditiveOffsetTransform(LinearTransform(output_size=4)).get_expanded_priors(8, None)


# issue 33: The Cannon's coefficients mean pollux's thing (the labels' own basis)


def _noise_free_cannon_problem(n_stars=100, n_pix=50, degree=1, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.normal(size=(n_stars, 3)).astype(np.float32)
    cannon = plx.Cannon(3, n_pix, poly_degree=degree)
    theta = rng.normal(size=(n_pix, cannon.n_features)).astype(np.float32)
    flux = np.asarray(cannon.get_features(labels) @ theta.T, np.float32)
    return cannon, labels, theta, flux


def test_cannon_coeffs_are_upstreams_on_noise_free_data():
    cannon, labels, theta, flux = _noise_free_cannon_problem()
    fitted = cannon.fit(labels, flux, np.ones_like(flux))
    assert fitted.coeffs.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(fitted.coeffs), theta, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(fitted.get_features(labels) @ fitted.coeffs.T), flux, atol=1e-5
    )
    # the fit's own, scaled-basis coefficients are kept and predict the same spectra
    assert not np.allclose(np.asarray(fitted.scaled_coeffs), theta, atol=1e-2)
    np.testing.assert_allclose(np.asarray(fitted.predict(labels)), flux, atol=1e-5)
    # pollux's transform parameters are the coefficients themselves
    a = fitted.get_coeffs_as_transform_pars()["data"][1]["A"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(fitted.coeffs))


def test_cannon_coeffs_for_physical_labels_predict_like_the_model():
    s = plx.datasets.synthetic_survey(150, 20, seed=3)
    fitted = plx.Cannon(3, 20).fit(s.labels, s.spectra, s.ivar)
    x = np.asarray(s.labels, np.float64)  # Teff ~ 4,500: evaluate the raw basis in float64
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    feats = np.column_stack([np.ones(len(x)), x] + [x[:, i] * x[:, j] for i, j in pairs])
    direct = feats @ np.asarray(fitted.coeffs, np.float64).T
    np.testing.assert_allclose(direct, np.asarray(fitted.predict(s.labels)), rtol=1e-3, atol=1e-3)


def test_cannon_artifacts_keep_the_scaled_coefficients_and_older_ones_load(tmp_path):
    cannon, labels, _, flux = _noise_free_cannon_problem(degree=2, n_pix=12)
    fitted = cannon.fit(labels * 100.0 + 4000.0, flux, np.ones_like(flux))
    path = fitted.save(tmp_path / "c")
    stored = np.load(path / "arrays.npz")["coeffs"]
    # the file holds the scaled basis, as every artifact before 0.2 did
    np.testing.assert_array_equal(stored, np.asarray(fitted.scaled_coeffs))
    back = plx.Cannon.load(path)
    np.testing.assert_array_equal(np.asarray(back.scaled_coeffs), stored)
    np.testing.assert_allclose(np.asarray(back.coeffs), np.asarray(fitted.coeffs), rtol=1e-6)
    lab = labels[:5] * 100.0 + 4000.0
    np.testing.assert_array_equal(np.asarray(back.predict(lab)), np.asarray(fitted.predict(lab)))


def test_optimize_runs_svi_on_upstreams_key():
    """Same key, same numbers: upstream runs SVI on `split(rng_key)[0]` (AutoDelta's
    initial point is drawn with it), so a pollux script's fit is reproduced exactly."""
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    rng = np.random.default_rng(5)
    y = rng.normal(size=(20, 2)) @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(20, 5))
    m = Lux(latent_size=2)
    m.register_output("flux", LinearTransform(output_size=5))
    data = LuxData(flux=OutputData(y, err=0.1))
    key = jax.random.PRNGKey(3)
    params, _ = m.optimize(data, 50, key, optimizer=numpyro.optim.Adam(1e-2))

    guide = AutoDelta(m.default_numpyro_model)
    svi = SVI(m.default_numpyro_model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    res = svi.run(jax.random.split(key, 2)[0], 50, data, progress_bar=False)
    want = guide.median(res.params)
    np.testing.assert_allclose(params["flux"]["data"]["A"], want["flux:A"], rtol=1e-6)
    np.testing.assert_allclose(params["latents"], want["latents"], rtol=1e-6)


def test_optimize_iterative_starts_from_upstreams_prior_draw():
    """Same key, same start: upstream draws the starting point with one `Predictive`
    sample on `split(rng_key)[1]`; a latent model's fit depends on its start (rotations)."""
    from numpyro.infer import Predictive

    rng = np.random.default_rng(6)
    y = rng.normal(size=(15, 2)) @ rng.normal(size=(2, 4))
    m = Lux(latent_size=2)
    m.register_output("flux", LinearTransform(output_size=4))
    m.register_output("label", LinearTransform(output_size=2))
    data = LuxData(flux=OutputData(y, err=0.1), label=OutputData(y[:, :2], err=0.1))
    key = jax.random.PRNGKey(7)
    draw = Predictive(m.default_numpyro_model, num_samples=1)(jax.random.split(key)[1], data)
    res = plx.optimize_iterative(
        m, data, blocks=["flux"], rng_key=key, max_cycles=1, progress=False
    )
    np.testing.assert_array_equal(res.params["latents"], draw["latents"][0])  # not optimised
    np.testing.assert_array_equal(res.params["label"]["data"]["A"], draw["label:A"][0])
