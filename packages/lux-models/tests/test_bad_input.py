"""Bad input at the Lux boundaries: each case raises the promised orrery error (or warns)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orrery.interface import (
    ArtifactError,
    ConfigError,
    OrreryError,
    ShapeError,
    ValueDomainError,
    load_artifact,
    save_artifact,
)
from orrery.lux import (
    AffineTransform,
    FunctionTransform,
    LinearTransform,
    Lux,
    LuxData,
    OutputData,
    ParameterBlock,
    optimize_iterative,
)

KEY = jax.random.PRNGKey(0)


def _model():
    m = Lux(latent_size=2)
    m.register_output("flux", AffineTransform(output_size=3))
    return m


def _params(n=4):
    return {
        "flux": {"data": {"A": jnp.ones((3, 2)), "b": jnp.zeros(3)}},
        "latents": jnp.zeros((n, 2)),
    }


@pytest.mark.parametrize("name", ["a:b", "flux:err"])
def test_colon_in_output_name(name):
    with pytest.raises(ConfigError, match="name") as info:
        _model().register_output(name, LinearTransform(output_size=1))
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match="':'"):
        LuxData(**{name: np.ones((2, 1))})


def test_wrong_types_are_type_errors():
    m = _model()
    for call in (
        lambda: m.register_output(3, LinearTransform(output_size=1)),
        lambda: m.register_output("x", "not a transform"),
        lambda: m.register_output("y", LinearTransform(output_size=1), err_transform=1.0),
        lambda: m.predict_outputs(jnp.zeros((1, 2)), [1, 2]),
        lambda: OutputData(np.ones(2), preprocessor="standardise"),
    ):
        with pytest.raises(TypeError) as info:
            call()
        assert isinstance(info.value, OrreryError)


def test_bad_values_name_the_argument():
    with pytest.raises(ConfigError, match="latent_size"):
        Lux(latent_size=0)
    with pytest.raises(ValueDomainError, match="err"):
        OutputData(np.ones(3), err=-1.0)
    with pytest.raises(ValueDomainError, match="err"):
        OutputData(np.ones(3), err=np.array([0.1, np.nan, 0.1]))
    with pytest.raises(ValueDomainError, match="data"):
        OutputData(np.array(["1.0", "oops"]))
    with pytest.raises(ShapeError, match="outputs"):
        LuxData(a=np.ones((3, 1)), b=np.ones((4, 1)))
    with pytest.raises(ShapeError, match="latents"):
        _model().predict_outputs(jnp.zeros((4, 3)), _params())
    with pytest.raises(ConfigError, match="pars"):
        _model().predict_outputs(jnp.zeros((4, 2)), {"other": {}})
    with pytest.raises(ValueDomainError, match="not processed"):
        OutputData(np.ones(2)).unprocess()


def test_zero_err_and_zero_steps_fail_before_numpyro():
    m = _model()
    data = LuxData(flux=OutputData(np.ones((4, 3)), err=0.0))
    with pytest.raises(ValueDomainError, match=r"data\['flux'\]\.err"):
        m.optimize(data, num_steps=10, rng_key=KEY)
    with pytest.raises(ValueDomainError, match="err_transform"):
        optimize_iterative(m, data, progress=False)
    ok = LuxData(flux=OutputData(np.ones((4, 3)), err=0.1))
    with pytest.raises(ConfigError, match="num_steps"):
        m.optimize(ok, num_steps=0, rng_key=KEY)
    # zero err is fine when an err_transform gives the width
    m2 = Lux(latent_size=1)
    m2.register_output(
        "y",
        LinearTransform(output_size=1),
        err_transform=FunctionTransform(1, lambda e, s: jnp.sqrt(e**2 + s**2)),
    )
    m2.optimize(LuxData(y=OutputData(np.ones((3, 1)), err=0.0)), num_steps=2, rng_key=KEY)


def test_bad_blocks():
    m = _model()
    data = LuxData(flux=OutputData(np.ones((4, 3)), err=0.1))
    with pytest.raises(ConfigError, match="least_squares"):
        optimize_iterative(m, data, blocks=[ParameterBlock("f", "flux", "lbfgs")], progress=False)
    with pytest.raises(TypeError, match="optimizer"):
        optimize_iterative(m, data, blocks=[ParameterBlock("f", "flux", 3.0)], progress=False)
    with pytest.raises(ConfigError, match="num_steps"):
        optimize_iterative(
            m, data, blocks=[ParameterBlock("f", "flux", None, {}, 0)], progress=False
        )
    with pytest.raises(TypeError, match="blocks"):
        optimize_iterative(m, data, blocks=[42], progress=False)


# ------------------------------------------------------------------ artifacts
def _rewrite(src, dst, *, drop_array=None, drop_key=None, prior_name=None):
    art = load_artifact(src)
    config = dict(art.config)
    arrays = {k: v for k, v in art.arrays.items() if k != drop_array}
    if drop_key is not None:
        config.pop(drop_key)
    if prior_name is not None:
        out = dict(config["outputs"][0])
        data = dict(out["data"])
        data["priors"] = {**data["priors"], "A": {"dist": prior_name, "params": {}}}
        out["data"] = data
        config["outputs"] = [out]
    save_artifact(dst, kind=art.kind, config=config, arrays=arrays, producer=art.producer)
    return dst


def test_incomplete_artifacts_are_refused(tmp_path):
    src = tmp_path / "good"
    _model().save(src, _params())
    Lux.load(src)  # the untouched one loads
    with pytest.raises(ArtifactError, match="flux:b"):
        Lux.load(_rewrite(src, tmp_path / "no_b", drop_array="p:flux:b"))
    with pytest.raises(ArtifactError, match="latent_size"):
        Lux.load(_rewrite(src, tmp_path / "no_key", drop_key="latent_size"))
    with pytest.raises(ArtifactError, match=r"missing: \['flux:A'\]"):  # an older artifact
        Lux.load(_rewrite(src, tmp_path / "no_table", drop_key="params", drop_array="p:flux:A"))
    with pytest.raises(ArtifactError, match="distribution"):
        Lux.load(_rewrite(src, tmp_path / "hostile", prior_name="enable_validation"))
    with pytest.raises(ConfigError, match="flux:b"):
        _model().save(tmp_path / "partial", {"flux": {"data": {"A": jnp.ones((3, 2))}}})


def test_wrong_shape_in_artifact_is_refused(tmp_path):
    src = tmp_path / "good"
    _model().save(src, _params())
    art = load_artifact(src)
    arrays = dict(art.arrays)
    arrays["p:flux:A"] = np.ones((4, 2), np.float32)
    config = dict(art.config)
    config["params"] = {**config["params"], "flux:A": {"shape": [4, 2], "dtype": "float32"}}
    save_artifact(tmp_path / "bad", kind=art.kind, config=config, arrays=arrays)
    with pytest.raises(ArtifactError, match="needs"):
        Lux.load(tmp_path / "bad")


def test_float64_artifact_keeps_dtype_or_warns(tmp_path, x64):
    _model().save(tmp_path / "wide", _params())
    _, pars = Lux.load(tmp_path / "wide")
    assert pars["flux"]["data"]["A"].dtype == jnp.float64
    jax.config.update("jax_enable_x64", False)
    with pytest.warns(UserWarning, match="float64"):
        _, pars = Lux.load(tmp_path / "wide")
    assert pars["flux"]["data"]["A"].dtype == jnp.float32


# ------------------------------------------------------------------ issue 32: silent answers
def _seq_model():
    m = Lux(latent_size=2)
    m.register_output("flux", AffineTransform(output_size=3))
    m.register_output("label", LinearTransform(output_size=2))
    return m


def _seq_data(n=6):
    return LuxData(
        flux=OutputData(np.ones((n, 3)), err=0.1), label=OutputData(np.zeros((n, 2)), err=0.1)
    )


@pytest.mark.parametrize(
    ("fixed", "closest"),
    [
        ({"flux:AA": jnp.ones((3, 2))}, "flux:A"),  # misspelt site (flat form)
        ({"flx": {"data": {"A": jnp.ones((3, 2))}}}, "flux"),  # misspelt output (nested)
        ({"flux": {"data": {"AA": jnp.ones((3, 2))}}}, "flux:A"),  # misspelt parameter
        ({"flux": {"dta": {"A": jnp.ones((3, 2))}}}, "data"),  # misspelt group
        ({"latent": jnp.zeros((6, 2))}, "latents"),
    ],
)
def test_misspelt_fixed_pars_raise_naming_the_closest(fixed, closest):
    """Was: the misspelt name was ignored and the parameter fitted freely."""
    m = _seq_model()
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'"):
        m.optimize(_seq_data(), 5, KEY, fixed_pars=fixed)
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'"):
        m.optimize_iterative(_seq_data(), fixed_pars=fixed, progress=False)


def test_predict_outputs_unknown_parameter_name_raises():
    """Was: an unknown name was ignored (a typo'd bias silently dropped)."""
    m = _model()
    z = jnp.zeros((4, 2))
    good = {"A": jnp.ones((3, 2)), "b": jnp.zeros(3)}
    assert m.predict_outputs(z, {"flux": {"data": good}})["flux"].shape == (4, 3)
    with pytest.raises(ConfigError, match="did you mean 'b'"):
        m.predict_outputs(z, {"flux": {"data": {**good, "bb": jnp.ones(3)}}})
    with pytest.raises(ConfigError, match="did you mean 'flux'"):
        m.predict_outputs(z, {"flx": {"data": good}, "flux": {"data": good}})
    with pytest.raises(ConfigError, match="did you mean 'flux'"):
        m.predict_outputs(z, {"flx": {"data": good}})
    with pytest.raises(ConfigError, match="did you mean 'flux:b'"):
        m.predict_outputs(z, {"flux:A": good["A"], "flux:bb": good["b"]})


def test_infinite_data_are_refused_not_dropped():
    """Was: +inf data were masked like NaN (missing) and the fit went on without a word."""
    m = _model()
    y = np.ones((6, 3))
    y[2, 1] = np.inf
    with pytest.raises(ValueDomainError, match=r"data\['flux'\]: 1 value\(s\) are \+inf"):
        m.optimize(LuxData(flux=OutputData(y, err=0.1)), 5, KEY)
    with pytest.raises(ValueDomainError, match="inf"):
        m.optimize_iterative(LuxData(flux=OutputData(y, err=0.1)), progress=False)
    # NaN still marks a missing value, and err = inf a value to ignore
    y[2, 1] = np.nan
    err = np.full((6, 3), 0.1)
    err[0, 0] = np.inf
    params, _ = m.optimize(LuxData(flux=OutputData(y, err=err)), 5, KEY)
    assert np.isfinite(np.asarray(params["latents"])).all()


def test_misspelt_data_output_is_not_silently_skipped():
    """Skipping outputs the data lack (upstream) must not swallow a typo in the data's names."""
    m = _seq_model()
    data = LuxData(flux=OutputData(np.ones((6, 3)), err=0.1), lable=np.zeros((6, 2)))
    with pytest.raises(ConfigError, match="did you mean 'label'"):
        m.optimize(data, 5, KEY)
    with pytest.raises(ConfigError, match="none of the registered outputs"):
        m.optimize(LuxData(other=np.zeros((6, 2))), 5, KEY)


def test_given_latents_of_the_wrong_shape_are_refused():
    """Was: `optimize` conditioned on a (1, 2) `latents` and broadcast it over all 6 objects,
    fitting the output parameters to one shared latent vector without a word."""
    m = _model()
    data = LuxData(flux=OutputData(np.ones((6, 3)), err=0.1))
    for bad in (jnp.zeros((1, 2)), jnp.zeros((6, 3)), jnp.zeros(2)):
        with pytest.raises(ShapeError, match=r"fixed_pars\['latents'\]: expected shape \(6, 2\)"):
            m.optimize(data, 5, KEY, fixed_pars={"latents": bad})
        with pytest.raises(ShapeError, match=r"fixed_pars\['latents'\]"):
            m.optimize_iterative(data, blocks=["flux"], fixed_pars={"latents": bad}, progress=False)
        with pytest.raises(ShapeError, match=r"initial_params\['latents'\]"):
            m.optimize_iterative(data, initial_params={"latents": bad}, progress=False)
    params, _ = m.optimize(data, 5, KEY, fixed_pars={"latents": np.zeros((6, 2))})
    assert params["flux"]["data"]["A"].shape == (3, 2)
