"""Lux for new objects over a survey: latents, uncertainties, predictions (issue 36)."""

from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest

from orrery.interface import ConfigError, ShapeError
from orrery.lux import AffineTransform, Lux, LuxData, OutputData
from orrery.lux.survey import ArraySource, LatentStore, infer_latents, write_spectra


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 2))
    flux = z @ rng.normal(size=(2, 16)) + 1.0 + rng.normal(0, 0.05, size=(120, 16))
    labels = z @ rng.normal(size=(2, 3))
    model = Lux(latent_size=2)
    model.register_output("flux", AffineTransform(output_size=16))
    model.register_output("label", AffineTransform(output_size=3))
    data = LuxData(flux=OutputData(flux[:80], err=0.05), label=OutputData(labels[:80], err=0.01))
    params = model.optimize_iterative(data, max_cycles=30, progress=False).params
    ivar = np.full((40, 16), 1 / 0.05**2)
    ivar[5, :] = 0.0  # an object without data
    root = tmp_path_factory.mktemp("lux")
    store = write_spectra(
        root / "spectra", ArraySource(flux[80:], ivar), chunk_stars=16, progress=False
    )
    yield model, params, store, flux[80:], labels[80:]
    jax.config.update("jax_enable_x64", False)


@pytest.fixture(autouse=True)
def _x64(trained):
    jax.config.update("jax_enable_x64", True)


@pytest.mark.filterwarnings("ignore:infer_latents")
def test_latents_equal_the_exact_in_memory_solve(trained, tmp_path):
    model, params, store, flux, labels = trained
    keep = np.arange(40) != 5
    new = LuxData(flux=OutputData(flux[keep], err=0.05))
    ref = model.optimize_iterative(
        new, blocks=["latents"], fixed_pars=model.output_pars(params), progress=False
    ).params["latents"]
    cat = infer_latents(
        model, params, store, catalogue=tmp_path / "a", predict=["label"], progress=False
    )
    got = cat.columns()
    np.testing.assert_allclose(got["latents"][keep], np.asarray(ref), rtol=1e-9, atol=1e-12)
    assert got["converged"][keep].all() and not got["usable"][5]
    # the object without data keeps the prior: z = 0, unit covariance
    np.testing.assert_allclose(got["latents"][5], 0.0)
    np.testing.assert_allclose(got["covariance"][5], np.eye(2), atol=1e-12)
    # uncertainties: the inverse of the Gauss-Newton Hessian of chi2 + |z|^2
    a = np.asarray(params["flux"]["data"]["A"])
    expected = np.linalg.inv(a.T @ a / 0.05**2 + np.eye(2))
    np.testing.assert_allclose(got["covariance"][0], expected, rtol=1e-8)
    assert np.abs(got["predicted_label"][keep] - labels[keep]).mean() < 0.05
    assert isinstance(cat, LatentStore)


@pytest.mark.filterwarnings("ignore:infer_latents")
def test_chunking_and_executor_do_not_change_the_answer(trained, tmp_path):
    model, params, store, _, _ = trained
    one = infer_latents(model, params, store, catalogue=tmp_path / "a", progress=False)
    with ThreadPoolExecutor(2) as pool:
        two = infer_latents(
            model, params, store, catalogue=tmp_path / "b", executor=pool, progress=False
        )
    np.testing.assert_array_equal(one["latents"], two["latents"])
    other = infer_latents(
        model, params, store, catalogue=tmp_path / "c", chunk_stars=7, progress=False
    )
    np.testing.assert_allclose(other["latents"], one["latents"], rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:infer_latents")
def test_without_the_prior_an_object_without_data_has_no_certainty(trained, tmp_path):
    """Was: latents 0 with a zero covariance (pinv of a zero Hessian) for an object without
    data; now, as `Cannon.infer_labels`: NaN latents and χ², infinite variances."""
    model, params, store, _, _ = trained
    got = infer_latents(
        model,
        params,
        store,
        catalogue=tmp_path / "a",
        latents_prior=False,
        predict=["label"],
        progress=False,
    ).columns()
    assert not got["usable"][5] and not got["converged"][5]
    assert np.isnan(got["latents"][5]).all() and np.isnan(got["chi2"][5])
    assert np.isnan(got["predicted_label"][5]).all()
    assert np.isinf(np.diag(got["covariance"][5])).all()
    keep = np.arange(40) != 5
    assert np.isfinite(got["covariance"][keep]).all() and got["usable"][keep].all()


def test_bad_calls(trained, tmp_path):
    model, params, store, _, _ = trained
    with pytest.raises(ConfigError, match="fluxx"):
        infer_latents(model, params, store, catalogue=tmp_path / "x", output="fluxx")
    with pytest.raises(ConfigError, match="predict"):
        infer_latents(model, params, store, catalogue=tmp_path / "x", predict=["teff"])
    with pytest.raises(ShapeError, match="pixels"):
        infer_latents(model, params, store, catalogue=tmp_path / "x", output="label")
