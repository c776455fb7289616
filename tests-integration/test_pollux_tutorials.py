"""pollux's simulated-data tutorials, followed through ``orrery.lux`` with only the import swapped.

Each test walks one upstream tutorial's scenario with the names the notebook calls
(``import orrery.lux as plx`` in place of ``import pollux as plx``, and
``orrery.lux.transforms`` in place of ``pollux.models.transforms`` /
``pollux.models``), at reduced sizes, and asserts what the notebook shows. The
tutorials are from adrn/pollux: the mirrored commit's ``Lux-linear-simulated-data``,
``Lux-simulated-data-underestimated-err`` and ``Lux-iterative-optimization``, and the
release's ``LVM-getting-started`` and ``LVM-error-models``. The APOGEE-data tutorials
are not here (they need the survey files).

Running the notebooks' calls unchanged needed no source change: ``pollux.models`` and
``pollux.models.transforms`` both map to ``orrery.lux.transforms`` (orrery has no
``orrery.lux.models`` alias). orrery warns where the mirrored notebooks use spellings
the release deprecated (``param_priors=``/``param_shapes=``, output parameters without
the ``{"data": ...}`` wrapper) and still gives the same result. Steps and cycles are cut
as each test says; ``test_lvm_error_models`` keeps the notebook's ``max_cycles=128``
(fewer leave the warm start unconverged) and is marked slow.

The simulation is the tutorials' one (written here, not imported): labels and fluxes
linear in 8 standard-normal latents, label 0 and 1 the first two latents, flux
columns 0 and 1 carrying a Gaussian bump, per-entry uncertainties uniform on
[0.01, 0.1]. The noise level of a label is therefore
``sqrt(E[err^2]) = sqrt((0.1^3 - 0.01^3) / (3 * 0.09)) = 0.0608`` in simulation
units, which is what a label RMSE against the *noisy* labels must come out at, and
what the tolerances below are written against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions.constraints import real

import orrery.lux as plx
from orrery.lux.transforms import (
    AffineTransform,
    FunctionTransform,
    LinearTransform,
    ScatterTransform,
)

N_STARS = 512  # tutorials: 2048
N_LATENTS = 8
N_LABELS = 2
N_FLUX = 64  # tutorials: 128
NUM_STEPS = 1000  # tutorials: 10_000 steps of Adam(1e-3)
LEARNING_RATE = 1e-2  # ten times the tutorials' rate for a tenth of the steps
ERR_STEPS = 1000  # LVM-error-models: 5000 steps for the "flux:err" block
LABEL_NOISE = float(np.sqrt((0.1**3 - 0.01**3) / (3 * 0.09)))  # 0.0608


@pytest.fixture(autouse=True)
def _x64():
    """The tutorials switch on float64 first thing; switch it back off afterwards."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _simulate(key, *, systematic: bool = False, n_stars: int = N_STARS, n_flux: int = N_FLUX):
    """The tutorials' linear simulation; ``systematic`` adds the error-model tutorials'
    unreported per-pixel scatter ``2 cos^2(2 pi i / (n_flux / 4))`` to the flux."""
    k_b, k_z, k_le, k_fe, k_ln, k_fn, k_sys = jax.random.split(key, 7)
    a = np.zeros((N_LABELS, N_LATENTS))
    a[0, 0] = a[1, 1] = 1.0
    pix = np.arange(n_flux)
    b = 0.1 * np.asarray(jax.random.normal(k_b, (n_flux, N_LATENTS)))
    b[:, 0] += 4 * np.exp(-0.5 * (pix - n_flux / 2) ** 2 / 5**2)
    b[:, 1] += 2 * np.exp(-0.5 * (pix - n_flux / 4) ** 2 / 3**2)
    z = np.asarray(jax.random.normal(k_z, (n_stars, N_LATENTS)))
    label_true, flux_true = z @ a.T, z @ b.T
    label_err = np.asarray(jax.random.uniform(k_le, label_true.shape, minval=0.01, maxval=0.1))
    flux_err = np.asarray(jax.random.uniform(k_fe, flux_true.shape, minval=0.01, maxval=0.1))
    data = {
        "label": label_true + label_err * np.asarray(jax.random.normal(k_ln, label_true.shape)),
        "label_err": label_err,
        "flux": flux_true + flux_err * np.asarray(jax.random.normal(k_fn, flux_true.shape)),
        "flux_err": flux_err,
    }
    truth = {"label": label_true, "flux": flux_true}
    if systematic:
        sys_err = 2.0 * np.cos(2 * np.pi * pix / (n_flux / 4)) ** 2
        data["flux"] = data["flux"] + sys_err * np.asarray(
            jax.random.normal(k_sys, flux_true.shape)
        )
        truth["systematic_err"] = sys_err
    return data, truth


def _pollux_data(data):
    """The tutorials' ``PolluxData`` with a ``ShiftScalePreprocessor`` per output."""
    return plx.data.PolluxData(
        flux=plx.data.OutputData(
            data["flux"],
            err=data["flux_err"],
            preprocessor=plx.data.ShiftScalePreprocessor.from_data(data["flux"]),
        ),
        label=plx.data.OutputData(
            data["label"],
            err=data["label_err"],
            preprocessor=plx.data.ShiftScalePreprocessor.from_data(data["label"]),
        ),
    )


def _rmse(a, b, axis=None):
    return np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=axis))


def _std(a, b):
    return np.std(np.asarray(a) - np.asarray(b), axis=0)


def test_lux_linear_simulated_data():
    """``Lux-linear-simulated-data``: train a linear ``LuxModel`` on labels + flux with
    Adam, then fit test-set latents with the output parameters fixed (first with both
    outputs, then from the flux alone) and compare predicted labels with the truth."""
    data, truth = _simulate(jax.random.key(8675309))
    all_data = _pollux_data(data)
    preprocessed_data = all_data.preprocess()
    train_data = preprocessed_data[: N_STARS // 2]
    test_data = preprocessed_data[N_STARS // 2 :]
    assert (len(train_data), len(test_data)) == (N_STARS // 2, N_STARS // 2)

    model = plx.LuxModel(latent_size=8)
    assert set(all_data.keys()) == {"flux", "label"}
    model.register_output("label", LinearTransform(output_size=N_LABELS))
    model.register_output("flux", LinearTransform(output_size=N_FLUX))

    # The tutorial's two prior variants for A only need to construct.
    alpha = 100.0
    LinearTransform(output_size=N_LABELS, param_priors={"A": dist.Normal(0.0, jnp.sqrt(1 / alpha))})
    LinearTransform(output_size=N_LABELS, param_priors={"A": dist.ImproperUniform(real, (), ())})

    # predict_outputs(latents, pars) with the tutorial's flat {"A": ...} parameters.
    rngs = jax.random.split(jax.random.PRNGKey(42), 3)
    latents = jax.random.normal(rngs[0], shape=(10, model.latent_size))
    pars = {
        "label": {"A": jax.random.normal(rngs[1], shape=(N_LABELS, model.latent_size))},
        "flux": {"A": jax.random.normal(rngs[2], shape=(N_FLUX, model.latent_size))},
    }
    outputs = model.predict_outputs(latents, pars)
    assert outputs["label"].shape == (10, N_LABELS)
    assert outputs["flux"].shape == (10, N_FLUX)
    np.testing.assert_allclose(outputs["label"], latents @ pars["label"]["A"].T, rtol=1e-12)

    opt_pars, svi_results = model.optimize(
        train_data,
        rng_key=jax.random.PRNGKey(112358),
        optimizer=numpyro.optim.Adam(LEARNING_RATE),
        num_steps=NUM_STEPS,
        svi_run_kwargs={"progress_bar": False},
    )
    losses = np.asarray(svi_results.losses.block_until_ready())
    assert np.all(np.isfinite(losses))
    assert losses[-100:].mean() < 0.1 * losses[:100].mean()
    assert opt_pars["label"]["data"]["A"].shape == (N_LABELS, N_LATENTS)
    assert opt_pars["flux"]["data"]["A"].shape == (N_FLUX, N_LATENTS)

    predict_train_values = model.predict_outputs(opt_pars["latents"], opt_pars)
    train_rmse = _rmse(predict_train_values["label"], train_data["label"].data, axis=0)
    # Preprocessed labels have unit scale (the labels are standard-normal latents), so
    # the fit to the noisy training labels sits at the noise level; unfitted is ~1.
    assert np.all(train_rmse < 1.5 * LABEL_NOISE), train_rmse

    fixed_pars = {
        "label": {"data": {"A": opt_pars["label"]["data"]["A"]}},
        "flux": {"data": {"A": opt_pars["flux"]["data"]["A"]}},
    }
    test_opt_pars, test_svi_results = model.optimize(
        test_data,
        rng_key=jax.random.PRNGKey(12345),
        optimizer=numpyro.optim.Adam(LEARNING_RATE),
        num_steps=NUM_STEPS,
        fixed_pars=fixed_pars,
        svi_run_kwargs={"progress_bar": False},
    )
    test_svi_results.losses.block_until_ready()
    assert test_opt_pars["latents"].shape == (N_STARS // 2, N_LATENTS)
    predict_test_values = model.predict_outputs(test_opt_pars["latents"], fixed_pars)
    predict_test_unprocessed = test_data.unprocess(predict_test_values)
    label_std = _std(predict_test_unprocessed["label"].data, truth["label"][N_STARS // 2 :])
    flux_std = np.mean(_std(predict_test_unprocessed["flux"].data, truth["flux"][N_STARS // 2 :]))
    # The tutorial's "std of prediction - truth": the flux's 64 pixels pin the latents
    # down, so held-out labels come out better than one label's own noise (measured
    # 0.010, 0.025 against 0.061), and the flux at its noise level (measured 0.056).
    assert np.all(label_std < 0.75 * LABEL_NOISE), label_std
    assert flux_std < 1.5 * LABEL_NOISE, flux_std

    flux_only_data = plx.data.PolluxData(flux=test_data["flux"])
    test_opt_pars_flux, _ = model.optimize(
        flux_only_data,
        rng_key=jax.random.PRNGKey(12345),
        optimizer=numpyro.optim.Adam(LEARNING_RATE),
        num_steps=NUM_STEPS,
        fixed_pars=fixed_pars,
        names=["flux"],
        svi_run_kwargs={"progress_bar": False},
    )
    predict_test_values_flux = model.predict_outputs(test_opt_pars_flux["latents"], opt_pars)
    predict_test_unprocessed_flux = test_data.unprocess(predict_test_values_flux)
    flux_label_std = _std(
        predict_test_unprocessed_flux["label"].data, truth["label"][N_STARS // 2 :]
    )
    # Labels predicted from the flux alone: as good as with the labels in the fit.
    assert np.all(flux_label_std < 0.75 * LABEL_NOISE), flux_label_std
    np.testing.assert_allclose(flux_label_std, label_std, rtol=0.3)


def test_lux_simulated_data_underestimated_err():
    """``Lux-simulated-data-underestimated-err``: the flux carries an unreported periodic
    scatter; a second model adds a per-pixel ``s`` through a ``FunctionTransform`` error
    transform, ``sqrt(err^2 + s^2)``, which should fit the held-out data better and whose
    ``s``, mapped back to flux units, should trace the injected scatter."""
    data, truth = _simulate(jax.random.key(42), systematic=True)
    true_systematic_err = truth["systematic_err"]
    all_data = _pollux_data(data)
    preprocessed_data = all_data.preprocess()
    train_data = preprocessed_data[: N_STARS // 2]
    test_data = preprocessed_data[N_STARS // 2 :]

    def fit(model, fixed_keys):
        opt_pars, svi_results = model.optimize(
            train_data,
            rng_key=jax.random.PRNGKey(112358),
            optimizer=numpyro.optim.Adam(LEARNING_RATE),
            num_steps=NUM_STEPS,
            svi_run_kwargs={"progress_bar": False},
        )
        train_losses = np.asarray(svi_results.losses)
        assert train_losses[-100:].mean() < train_losses[:100].mean()
        fixed_pars = fixed_keys(opt_pars)
        test_opt_pars, test_svi_results = model.optimize(
            test_data,
            rng_key=jax.random.PRNGKey(12345),
            optimizer=numpyro.optim.Adam(LEARNING_RATE),
            num_steps=NUM_STEPS,
            fixed_pars=fixed_pars,
            svi_run_kwargs={"progress_bar": False},
        )
        pred = model.predict_outputs(test_opt_pars["latents"], fixed_pars)
        return opt_pars, np.asarray(test_svi_results.losses), pred

    model1 = plx.LuxModel(latent_size=8)
    model1.register_output("label", LinearTransform(output_size=N_LABELS))
    model1.register_output("flux", LinearTransform(output_size=N_FLUX))
    _, test_losses1, predict_test_values1 = fit(
        model1,
        lambda p: {
            "label": {"data": {"A": p["label"]["data"]["A"]}},
            "flux": {"data": {"A": p["flux"]["data"]["A"]}},
        },
    )

    err_trans = FunctionTransform(
        output_size=N_FLUX,
        transform=lambda err, s: jnp.sqrt(err**2 + s**2),
        param_priors={"s": dist.HalfNormal(5.0).expand((N_FLUX,))},
        param_shapes={},
    )
    model2 = plx.LuxModel(latent_size=8)
    model2.register_output("flux", LinearTransform(output_size=N_FLUX), err_transform=err_trans)
    model2.register_output("label", LinearTransform(output_size=N_LABELS))
    opt_pars2, test_losses2, predict_test_values2 = fit(
        model2,
        lambda p: {
            "label": {"data": {"A": p["label"]["data"]["A"]}},
            "flux": {
                "data": {"A": p["flux"]["data"]["A"]},
                "err": {"s": p["flux"]["err"]["s"]},
            },
        },
    )
    assert opt_pars2["flux"]["err"]["s"].shape == (N_FLUX,)

    # The notebook's closing comparison, test_svi_results1.losses[-1] against
    # test_svi_results2.losses[-1]: with the scatter modelled the held-out loss drops by
    # orders of magnitude (measured 6.7e6 -> 1.4e4), so a factor of 10 is a wide margin.
    assert test_losses2[-1] < 0.1 * test_losses1[-1], (test_losses1[-1], test_losses2[-1])

    # The two predicted-vs-true label figures: the plain model's latents are dragged by
    # the unreported scatter (measured RMSE 0.16, 0.38 in preprocessed units), the error
    # model's sit at the label noise (measured 0.061, 0.054 against 0.061).
    noise = np.sqrt(np.mean(np.asarray(test_data["label"].err) ** 2, axis=0))
    rmse1 = _rmse(predict_test_values1["label"], test_data["label"].data, axis=0)
    rmse2 = _rmse(predict_test_values2["label"], test_data["label"].data, axis=0)
    assert np.all(rmse2 < 1.3 * noise), (rmse2, noise)
    assert np.all(rmse1 > 2 * rmse2), (rmse1, rmse2)

    # The last figure: s mapped back to flux units traces 2 cos^2 (amplitude 2). Measured:
    # correlation 0.997, median absolute difference 0.036.
    inferred_s = np.asarray(
        all_data["flux"].preprocessor.inverse_transform_err(opt_pars2["flux"]["err"]["s"])
    )
    assert inferred_s.shape == true_systematic_err.shape
    assert np.all(inferred_s >= 0)
    assert np.corrcoef(inferred_s, true_systematic_err)[0, 1] > 0.98
    assert np.median(np.abs(inferred_s - true_systematic_err)) < 0.1


def test_lux_iterative_optimization():
    """``Lux-iterative-optimization``: the same linear model trained once with Adam and once
    with ``optimize_iterative`` (alternating closed-form / per-block solves); then each
    one's test-set latents are fit from the flux alone and the predicted labels compared."""
    # Full size here: the iterative solver is fast enough (about 4 s at 2,048 stars).
    n_stars, n_flux = 2048, 128
    data, _ = _simulate(jax.random.key(8675309), n_stars=n_stars, n_flux=n_flux)
    preprocessed_data = _pollux_data(data).preprocess()
    train_data = preprocessed_data[: n_stars // 2]
    test_data = preprocessed_data[n_stars // 2 :]

    model = plx.LuxModel(latent_size=N_LATENTS)
    model.register_output("label", LinearTransform(output_size=N_LABELS))
    model.register_output("flux", LinearTransform(output_size=n_flux))

    opt_pars_svi, svi_results = model.optimize(
        train_data,
        rng_key=jax.random.PRNGKey(112358),
        optimizer=numpyro.optim.Adam(LEARNING_RATE),
        num_steps=NUM_STEPS,
        svi_run_kwargs={"progress_bar": False},
    )
    svi_results.losses.block_until_ready()
    iterative_result = model.optimize_iterative(
        train_data,
        max_cycles=50,
        tol=1e-6,
        rng_key=jax.random.PRNGKey(112358),
        progress=False,
    )
    cycle_losses = np.asarray(iterative_result.losses_per_cycle)
    # "Converged: True after N cycles": orrery 11 on this simulation (pollux 11 and orrery
    # 12 on the notebook's own draw); each cycle's loss no higher than the one before
    # (a relative 1e-9 of slack for float64 round-off), and the final loss close to the
    # notebook's level, about 61,880 at this size and noise (measured 61,879.0).
    assert iterative_result.converged
    assert iterative_result.n_cycles <= 20
    assert np.all(np.diff(cycle_losses) <= 1e-9 * np.abs(cycle_losses[:-1])), cycle_losses
    assert cycle_losses[-1] == pytest.approx(61880.0, rel=0.01)
    svi_losses = np.asarray(svi_results.losses)
    assert svi_losses[-100:].mean() < svi_losses[:100].mean()

    fixed_pars_svi = {k: v for k, v in opt_pars_svi.items() if k != "latents"}
    test_flux_only = plx.data.PolluxData(flux=test_data["flux"])
    test_pars_svi, _ = model.optimize(
        test_flux_only,
        rng_key=jax.random.PRNGKey(42),
        optimizer=numpyro.optim.Adam(LEARNING_RATE),
        num_steps=NUM_STEPS // 5,
        fixed_pars=fixed_pars_svi,
        names=["flux"],
        svi_run_kwargs={"progress_bar": False},
    )
    test_pars_svi = {**fixed_pars_svi, **test_pars_svi}

    opt_pars_iter = iterative_result.params
    fixed_pars_iter = {k: v for k, v in opt_pars_iter.items() if k != "latents"}
    test_result_iter = model.optimize_iterative(
        test_flux_only,
        blocks=["latents"],
        fixed_pars=fixed_pars_iter,
        max_cycles=50,
        tol=1e-6,
        progress=False,
    )
    test_pars_iter = test_result_iter.params

    pred_svi = model.predict_outputs(test_pars_svi["latents"], test_pars_svi)
    pred_iter = model.predict_outputs(test_pars_iter["latents"], test_pars_iter)
    svi_label_rmse = _rmse(pred_svi["label"], test_data["label"].data)
    iter_label_rmse = _rmse(pred_iter["label"], test_data["label"].data)
    svi_flux_rmse = _rmse(pred_svi["flux"], test_data["flux"].data)
    iter_flux_rmse = _rmse(pred_iter["flux"], test_data["flux"].data)
    # The notebook's comparison table: the iterative fit's held-out label RMSE is the
    # label noise itself (pollux 0.0593266, orrery 0.0593270 on the notebook's draw;
    # here measured 0.0612 against a noise of 0.061), and no worse than the Adam fit's
    # (which at this reduced step count is 0.105). Flux RMSE: at its noise level.
    label_noise = np.sqrt(np.mean(np.asarray(test_data["label"].err) ** 2))
    flux_noise = np.sqrt(np.mean(np.asarray(test_data["flux"].err) ** 2))
    assert iter_label_rmse == pytest.approx(label_noise, rel=0.1)
    assert iter_label_rmse <= svi_label_rmse
    assert svi_label_rmse < 2 * label_noise
    assert iter_flux_rmse == pytest.approx(flux_noise, rel=0.15), (iter_flux_rmse, flux_noise)
    assert iter_flux_rmse <= svi_flux_rmse
    assert set(test_pars_iter) == {"latents", "label", "flux"}


LABEL_LOC = np.array([5000.0, 0.0])  # LVM-getting-started: a Teff-like label (K) ...
LABEL_SCALE = np.array([500.0, 0.3])  # ... and an abundance-like one (dex)


def _physical_units(data, truth):
    """``LVM-getting-started``'s relabelling of the simulation into Teff and [X/H] units."""
    data["label"] = data["label"] * LABEL_SCALE + LABEL_LOC
    data["label_err"] = data["label_err"] * LABEL_SCALE
    truth["label"] = truth["label"] * LABEL_SCALE + LABEL_LOC
    return data, truth


def _lvm(latent_size, label_transform=None):
    model = plx.LVM(latent_size=latent_size)
    model.register_output("label", label_transform or LinearTransform(output_size=N_LABELS))
    model.register_output("flux", LinearTransform(output_size=N_FLUX))
    return model


def test_lvm_getting_started():
    """``LVM-getting-started`` (release), main thread: train an ``LVM`` with
    ``optimize_iterative``, carry ``output_pars`` to the test set, fit its latents
    (``blocks=["latents"]``) with and without the labels, and compare the unprocessed
    predicted labels with the truth in physical units."""
    data, truth = _physical_units(*_simulate(jax.random.key(8675309)))
    all_data = _pollux_data(data).preprocess()
    train_data = all_data[: N_STARS // 2]
    test_data = all_data[N_STARS // 2 :]
    true_test_labels = truth["label"][N_STARS // 2 :]

    model = _lvm(8)
    alpha = 100.0
    LinearTransform(output_size=N_LABELS, priors={"A": dist.Normal(0.0, jnp.sqrt(1 / alpha))})
    LinearTransform(output_size=N_LABELS, priors={"A": dist.ImproperUniform(real, (), ())})

    rngs = jax.random.split(jax.random.PRNGKey(42), 3)
    latents = jax.random.normal(rngs[0], shape=(10, model.latent_size))
    pars = {
        "label": {"data": {"A": jax.random.normal(rngs[1], shape=(N_LABELS, 8))}},
        "flux": {"data": {"A": jax.random.normal(rngs[2], shape=(N_FLUX, 8))}},
    }
    outputs = model.predict_outputs(pars, latents)
    assert outputs["label"].shape == (10, N_LABELS)
    assert outputs["flux"].shape == (10, N_FLUX)
    np.testing.assert_allclose(outputs["flux"], latents @ pars["flux"]["data"]["A"].T, rtol=1e-12)

    trained = model.optimize_iterative(
        train_data, max_cycles=64, rng_key=jax.random.PRNGKey(112358), progress=False
    )
    opt_pars = trained.params
    assert trained.converged
    cycle_losses = np.asarray(trained.losses_per_cycle)
    assert np.all(np.diff(cycle_losses) <= 1e-9 * np.abs(cycle_losses[:-1])), cycle_losses
    # The notebook lists (block.name, block.optimizer): for an all-linear model every
    # block is solved in closed form.
    assert [(block.name, block.optimizer) for block in trained.blocks] == [
        ("latents", "least_squares"),
        ("label:data", "least_squares"),
        ("flux:data", "least_squares"),
    ]

    # The timing cell's short warm-up call of optimize(..., progress=False).
    svi_pars, svi_results = model.optimize(
        train_data,
        rng_key=jax.random.PRNGKey(112358),
        optimizer=numpyro.optim.Adam(1e-3),
        num_steps=10,
        progress=False,
    )
    assert np.asarray(svi_results.losses).shape == (10,)
    assert svi_pars["latents"].shape == (N_STARS // 2, N_LATENTS)

    predict_train_values = model.predict_outputs(opt_pars)  # latents ride in opt_pars
    assert predict_train_values["label"].shape == (N_STARS // 2, N_LABELS)

    fixed_pars = model.output_pars(opt_pars)
    assert "latents" not in fixed_pars
    test_result = model.optimize_iterative(
        test_data, blocks=["latents"], fixed_pars=fixed_pars, max_cycles=64, progress=False
    )
    test_opt_pars = test_result.params
    assert sorted(test_opt_pars) == ["flux", "label", "latents"]
    assert test_opt_pars["latents"].shape == (N_STARS // 2, N_LATENTS)
    predict_test_values = model.predict_outputs(fixed_pars, latents=test_opt_pars["latents"])
    predict_test_unprocessed = test_data.unprocess(predict_test_values)
    label_std = _std(predict_test_unprocessed["label"].data, true_test_labels)
    flux_std = np.mean(_std(predict_test_unprocessed["flux"].data, truth["flux"][N_STARS // 2 :]))

    flux_only_data = plx.data.PolluxData(flux=test_data["flux"])
    test_result_flux = model.optimize_iterative(
        flux_only_data, blocks=["latents"], fixed_pars=fixed_pars, max_cycles=64, progress=False
    )
    predict_test_values_flux = model.predict_outputs(
        fixed_pars, latents=test_result_flux.params["latents"]
    )
    predict_test_unprocessed_flux = test_data.unprocess(predict_test_values_flux)
    flux_label_std = _std(predict_test_unprocessed_flux["label"].data, true_test_labels)
    # In physical units one label's noise is 0.061 x (500 K, 0.3 dex) = (30 K, 0.018 dex);
    # the held-out predictions beat it by a wide margin (measured 2.9 K and 0.0029 dex),
    # from the flux alone as well (2.9 K, 0.0030 dex); the flux sits below its noise
    # (measured 0.014 against 0.061).
    physical_noise = LABEL_NOISE * LABEL_SCALE
    assert np.all(label_std < 0.5 * physical_noise), label_std
    assert np.all(flux_label_std < 0.5 * physical_noise), flux_label_std
    np.testing.assert_allclose(flux_label_std, label_std, rtol=0.3)
    assert flux_std < LABEL_NOISE, flux_std


def test_lvm_getting_started_latent_size_and_units():
    """``LVM-getting-started`` (release), second half: the latent-size sweep, the
    over-sized model's singular values, and raw labels in physical units with a
    ``LinearTransform`` (no offset) against an ``AffineTransform`` with scaled priors."""
    data, truth = _physical_units(*_simulate(jax.random.key(8675309)))
    all_data = _pollux_data(data).preprocess()
    train_data = all_data[: N_STARS // 2]
    test_data = all_data[N_STARS // 2 :]
    flux_only_data = plx.data.PolluxData(flux=test_data["flux"])
    true_test_labels = truth["label"][N_STARS // 2 :]

    sweep_test_rmse = {}
    for size in (2, 8, 24):
        _model = _lvm(size)
        _trained = _model.optimize_iterative(
            train_data, max_cycles=64, rng_key=jax.random.PRNGKey(112358), progress=False
        )
        _fixed = _model.output_pars(_trained.params)
        _applied = _model.optimize_iterative(
            flux_only_data, blocks=["latents"], fixed_pars=_fixed, progress=False
        )
        _pred = _model.predict_outputs(_fixed, latents=_applied.params["latents"])
        sweep_test_rmse[size] = _rmse(
            test_data.unprocess(_pred)["label"].data, true_test_labels, axis=0
        )
        if size == 24:
            singular_values = np.linalg.svd(
                np.asarray(_trained.params["flux"]["data"]["A"]), compute_uv=False
            )
    # The sweep's point ("dashed line: the true latent dimensionality"): held-out label
    # error is smallest at the true 8 latents; 2 latents underfit (measured 19.5 K /
    # 0.021 dex against 3.0 K / 0.0032 dex) and 24 overfit the 256 training stars
    # (32.7 K / 0.0081 dex). The notebook's 2..32 sweep is cut to these three sizes.
    assert np.all(sweep_test_rmse[8] < sweep_test_rmse[2] / 3), sweep_test_rmse
    assert np.all(sweep_test_rmse[8] < sweep_test_rmse[24]), sweep_test_rmse
    # The over-sized model's flux matrix: only its shape is asserted. The notebook's
    # figure shows how the spectrum falls past index 8; at this reduced size it has no
    # clear gap (5.07 -> 4.01), and at full size the drop is a factor 1.75 (9.72 ->
    # 5.56), with nothing from pollux here to hold that against.
    assert singular_values.shape == (24,)

    raw_data = plx.data.PolluxData(
        flux=plx.data.OutputData(data["flux"], err=data["flux_err"]),
        label=plx.data.OutputData(data["label"], err=data["label_err"]),
    )
    raw_train, raw_test = raw_data[: N_STARS // 2], raw_data[N_STARS // 2 :]

    def raw_fit(label_transform):
        raw_model = _lvm(N_LATENTS, label_transform)
        raw_trained = raw_model.optimize_iterative(
            raw_train, max_cycles=64, rng_key=jax.random.PRNGKey(112358), progress=False
        )
        raw_fixed = raw_model.output_pars(raw_trained.params)
        raw_applied = raw_model.optimize_iterative(
            plx.data.PolluxData(flux=raw_test["flux"]),
            blocks=["latents"],
            fixed_pars=raw_fixed,
            progress=False,
        )
        raw_pred = raw_model.predict_outputs(raw_fixed, latents=raw_applied.params["latents"])
        return _rmse(raw_pred["label"], true_test_labels, axis=0)

    raw_rmse = raw_fit(None)
    label_scales = np.array([5000.0, 0.1])
    affine_rmse = raw_fit(
        AffineTransform(
            output_size=N_LABELS,
            priors={
                "A": dist.Normal(scale=label_scales.reshape(N_LABELS, 1)),
                "b": dist.Normal(scale=label_scales),
            },
        )
    )
    # Raw labels: a LinearTransform has no offset, so Teff misses its 5000 K zero point
    # entirely (measured RMSE 5077 K); the AffineTransform with priors on the labels'
    # scale recovers the preprocessed fit's accuracy (3.1 K / 0.0030 dex against
    # 3.0 K / 0.0032 dex).
    assert raw_rmse[0] > 1000.0, raw_rmse
    assert np.all(affine_rmse < 1.5 * sweep_test_rmse[8]), (affine_rmse, sweep_test_rmse[8])


@pytest.mark.slow  # about 60 s on a loaded 2-core machine: ~40 Adam solves of s per fit
def test_lvm_error_models():
    """``LVM-error-models`` (release): the unreported periodic flux scatter again, now with
    ``optimize_iterative`` throughout and the per-pixel ``ScatterTransform``; then the
    notebook's diagnosis of pixels whose fitted ``s`` collapsed, and a warm start from the
    plain model's parameters with ``s = 1``."""
    data, truth = _simulate(jax.random.key(42), systematic=True)
    true_systematic_err = truth["systematic_err"]
    all_data = _pollux_data(data).preprocess()
    train_data = all_data[: N_STARS // 2]
    test_data = all_data[N_STARS // 2 :]

    def test_labels(model, opt_pars):
        fixed = model.output_pars(opt_pars)
        applied = model.optimize_iterative(
            test_data,
            rng_key=jax.random.PRNGKey(12345),
            max_cycles=128,
            fixed_pars=fixed,
            blocks=["latents"],
            progress=False,
        )
        return model.predict_outputs(fixed, latents=applied.params["latents"])["label"]

    model1 = _lvm(8)
    results1 = model1.optimize_iterative(
        train_data, rng_key=jax.random.PRNGKey(112358), max_cycles=128, progress=False
    )
    opt_pars1 = results1.params
    predict_test_labels1 = test_labels(model1, opt_pars1)

    err_trans = ScatterTransform(output_size=N_FLUX, priors={"s": dist.HalfNormal(5.0)})
    model2 = plx.LVM(latent_size=8)
    model2.register_output("flux", LinearTransform(output_size=N_FLUX), err_transform=err_trans)
    model2.register_output("label", LinearTransform(output_size=N_LABELS))
    results2 = model2.optimize_iterative(
        train_data,
        rng_key=jax.random.PRNGKey(112358),
        max_cycles=128,
        progress=False,
        block_options={"flux:err": {"num_steps": ERR_STEPS}},
    )
    opt_pars2 = results2.params
    predict_test_labels2 = test_labels(model2, opt_pars2)

    noise = np.sqrt(np.mean(np.asarray(test_data["label"].err) ** 2, axis=0))
    rmse1 = _rmse(predict_test_labels1, test_data["label"].data, axis=0)
    rmse2 = _rmse(predict_test_labels2, test_data["label"].data, axis=0)
    inferred_s = np.asarray(
        all_data["flux"].preprocessor.inverse_transform_err(opt_pars2["flux"]["err"]["s"])
    )
    # The two label figures: the plain model is dragged by the scatter (measured RMSE
    # 0.16, 0.38 in preprocessed units), the scatter model sits at the label noise
    # (measured 0.052, 0.032 against 0.062, 0.060).
    assert np.all(rmse2 < 1.3 * noise), (rmse2, noise)
    assert np.all(rmse1 > 2 * rmse2), (rmse1, rmse2)

    predict_train2 = model2.predict_outputs(opt_pars2)
    resid2 = np.asarray(predict_train2["flux"]) - np.asarray(train_data["flux"].data)
    resid_scatter = resid2.std(axis=0)
    reported = np.asarray(train_data["flux"].err).mean(axis=0)
    suspect = np.where(resid_scatter < 0.5 * reported)[0]
    # The notebook's diagnosis: a few pixels whose s started near zero collapse (s ~ 0,
    # the fit chasing their noise); they are the ones fitted far better than their
    # reported error allows (measured: pixels 7, 11, 16, 55, 57 with s < 0.005 where
    # the true scatter is 1.71, 0.29, 2.0, 1.71, 1.71).
    fitted_s = np.asarray(opt_pars2["flux"]["err"]["s"])
    assert 0 < len(suspect) < N_FLUX // 4, suspect
    assert np.all(fitted_s[suspect] < 0.05), fitted_s[suspect]

    initial_params2 = {
        "latents": opt_pars1["latents"],
        "flux": {"data": opt_pars1["flux"]["data"], "err": {"s": np.ones(N_FLUX)}},
        "label": {"data": opt_pars1["label"]["data"], "err": {}},
    }
    results2b = model2.optimize_iterative(
        train_data,
        rng_key=jax.random.PRNGKey(112358),
        max_cycles=128,
        progress=False,
        initial_params=initial_params2,
        block_options={"flux:err": {"num_steps": ERR_STEPS}},
    )
    inferred_s_warm = np.asarray(
        all_data["flux"].preprocessor.inverse_transform_err(results2b.params["flux"]["err"]["s"])
    )
    # Warm-started from the plain fit with s = 1, every pixel's s traces the truth
    # (measured: correlation 0.997, worst pixel off by 0.12 of an amplitude of 2),
    # where the cold start's collapsed pixels were off by up to 2.0.
    cold_err = np.abs(inferred_s - true_systematic_err)
    warm_err = np.abs(inferred_s_warm - true_systematic_err)
    assert np.corrcoef(inferred_s_warm, true_systematic_err)[0, 1] > 0.98
    assert warm_err.max() < 0.3, warm_err.max()
    assert cold_err.max() > 2 * warm_err.max()
