"""optimize_iterative: exact least-squares blocks, fixed blocks, SVI blocks, convergence."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from orrery.interface import ConfigError
from orrery.lux import (
    AffineTransform,
    FunctionTransform,
    IterativeOptimizationResult,
    LinearTransform,
    Lux,
    LuxData,
    OffsetTransform,
    OutputData,
    ParameterBlock,
    optimize_iterative,
)
from orrery.lux.optimize import _solve_output_block, _State

N, L, P = 60, 2, 8


@pytest.fixture(scope="module")
def truth():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(N, L))
    a = rng.normal(size=(P, L))
    b = rng.normal(size=P)
    y = z @ a.T + b + 0.05 * rng.normal(size=(N, P))
    return z, a, b, y


def _model():
    m = Lux(L)
    m.register_output("flux", AffineTransform(P))
    return m


def test_reconstructs_linear_data(truth):
    _, _, _, y = truth
    m = _model()
    res = optimize_iterative(
        m, LuxData(flux=OutputData(y, err=0.05)), max_cycles=40, progress=False, record_history=True
    )
    assert isinstance(res, IterativeOptimizationResult)
    pred = m.predict_outputs(res.params["latents"], res.params)["flux"]
    assert float(jnp.sqrt(jnp.mean((pred - y) ** 2))) < 0.06
    losses = np.array(res.losses_per_cycle)
    assert np.all(np.diff(losses) <= 1e-3 * np.abs(losses[:-1]))  # coordinate descent descends
    assert len(res.history) == 2 * res.n_cycles


def test_output_block_is_exact_ridge_solution(truth, x64):
    """The least-squares block equals the closed-form MAP under a Normal(μ, σ) prior."""
    z, _, _, y = truth
    m = Lux(L)
    m.register_output(
        "flux", AffineTransform(P, priors={"A": dist.Normal(0.5, 2.0), "b": dist.Normal(-1.0, 0.5)})
    )
    err = np.random.default_rng(0).uniform(0.05, 0.2, size=y.shape)
    data = LuxData(flux=OutputData(y, err=err))
    state = _State(m, data, None, {})
    flat = {"latents": jnp.asarray(z), "flux:A": jnp.zeros((P, L)), "flux:b": jnp.zeros(P)}
    new = _solve_output_block(state, "flux", flat)
    x = np.hstack([z, np.ones((N, 1))])
    ridge = np.array([0.25, 0.25, 4.0])
    mean = np.array([0.5, 0.5, -1.0])
    for p in range(P):
        w = 1 / err[:, p] ** 2
        theta = np.linalg.solve(
            x.T @ (w[:, None] * x) + np.diag(ridge), x.T @ (w * y[:, p]) + ridge * mean
        )
        np.testing.assert_allclose(new["flux:A"][p], theta[:2], rtol=1e-8)
        np.testing.assert_allclose(new["flux:b"][p], theta[2], rtol=1e-8)
    # and it is a stationary point of the loss in those parameters
    g = jax.grad(lambda a: state._loss({**new, "flux:A": a}))(new["flux:A"])
    assert float(jnp.max(jnp.abs(g))) < 1e-6


def test_latents_only_with_fixed_outputs(truth):
    z, a, b, y = truth
    m = _model()
    fixed = {"flux": {"data": {"A": jnp.asarray(a), "b": jnp.asarray(b)}}}
    data = LuxData(flux=OutputData(y, err=0.05))
    res = m.optimize_iterative(data, blocks=["latents"], fixed_pars=fixed, progress=False)
    # outputs really held fixed; result contains fixed + optimised params
    np.testing.assert_array_equal(res.params["flux"]["data"]["A"], jnp.asarray(a))
    assert float(jnp.sqrt(jnp.mean((res.params["latents"] - z) ** 2))) < 0.05
    assert res.converged and res.n_cycles <= 3


def test_blocks_not_optimised_stay_fixed(truth):
    # regression: upstream SVI blocks let the other outputs drift
    z, a, b, y = truth
    m = Lux(L)
    m.register_output("flux", AffineTransform(P))
    m.register_output(
        "other", FunctionTransform(P, lambda zz, c: jnp.tanh(zz[0]) * c, shapes={"c": (P,)})
    )
    data = LuxData(flux=OutputData(y, err=0.05), other=OutputData(y, err=0.5))
    init = {
        "latents": jnp.asarray(z),
        "flux": {"data": {"A": jnp.asarray(a), "b": jnp.asarray(b)}},
        "other": {"data": {"c": jnp.ones(P)}},
    }
    blocks = [
        ParameterBlock(
            "other",
            "other:data",
            optimizer=None,
            num_steps=50,
            optimizer_kwargs={"step_size": 1e-2},
        )
    ]
    res = optimize_iterative(
        m, data, blocks=blocks, initial_params=init, max_cycles=1, progress=False
    )
    np.testing.assert_array_equal(res.params["latents"], jnp.asarray(z))
    np.testing.assert_array_equal(res.params["flux"]["data"]["A"], jnp.asarray(a))
    assert not np.allclose(res.params["other"]["data"]["c"], 1.0)


def test_offset_output_and_error_transform_weights(truth):
    z, _, _, _ = truth
    rng = np.random.default_rng(2)
    b = rng.normal(size=L)
    y = z + b + 0.01 * rng.normal(size=z.shape)
    m = Lux(L)
    m.register_output("pos", OffsetTransform(L))
    err_t = FunctionTransform(
        L, lambda e, s: jnp.sqrt(e**2 + s**2), priors={"s": dist.HalfNormal(0.1)}
    )
    m.register_output("flux", LinearTransform(L), err_transform=err_t)
    data = LuxData(pos=OutputData(y, err=0.01), flux=OutputData(z, err=0.01))
    fixed = {"flux": {"data": {"A": jnp.eye(L)}, "err": {"s": jnp.asarray(0.01)}}}
    res = optimize_iterative(
        m, data, blocks=["latents", "pos"], fixed_pars=fixed, max_cycles=20, progress=False
    )
    # an offset's bias is upstream's (output_size, 1) column
    np.testing.assert_allclose(res.params["pos"]["data"]["b"], b[:, None], atol=0.02)


def test_non_linear_block_cannot_use_least_squares():
    m = Lux(1)
    m.register_output("x", FunctionTransform(1, lambda z, c: z * c))
    with pytest.raises(ConfigError, match="not linear"):
        optimize_iterative(
            m,
            LuxData(x=np.zeros((3, 1))),
            blocks=[ParameterBlock("x", "x:data", optimizer="least_squares")],
            progress=False,
        )
    with pytest.raises(ConfigError, match="unknown parameter group"):
        optimize_iterative(m, LuxData(x=np.zeros((3, 1))), blocks=["nope"], progress=False)


def test_cannon_sequence_output_block_is_solved_exactly():
    """A PolyFeature -> Linear output is linear in A: one exact solve matches the Cannon."""
    from orrery.lux import Cannon
    from orrery.lux.datasets import synthetic_survey

    s = synthetic_survey(60, 8, seed=0)
    c = Cannon(3, 8).fit(s.labels, s.spectra, s.ivar, fit_scatter=False)
    m = Lux(3)
    m.register_output("flux", c.to_transform_sequence())
    data = LuxData(flux=OutputData(s.spectra, err=1 / np.sqrt(s.ivar)))
    fixed = {"latents": c.scale_labels(s.labels)}
    res = optimize_iterative(
        m, data, blocks=["flux"], fixed_pars=fixed, max_cycles=2, progress=False
    )
    a = res.params["flux"]["data"][1]["A"]
    # the unit-Normal prior is a ridge of 1 against weights ~1e4: negligible
    np.testing.assert_allclose(a, c.scaled_coeffs, atol=2e-3)  # latents: scaled labels


def _scatter_model():
    m = Lux(L)
    err_t = FunctionTransform(
        P, lambda e, s: jnp.sqrt(e**2 + s**2), priors={"s": dist.HalfNormal(1.0)}
    )
    m.register_output("flux", AffineTransform(P), err_transform=err_t)
    return m


def test_err_parameters_left_out_of_every_block_warn(truth):
    """As upstream: an err_transform's free parameters that no block optimises warn.

    Without the warning `s` silently kept its random prior draw as the fitted value.
    """
    _, _, _, y = truth
    data = LuxData(flux=OutputData(y, err=0.05))
    with pytest.warns(UserWarning, match="flux:err"):
        optimize_iterative(
            _scatter_model(), data, blocks=["latents", "flux"], max_cycles=1, progress=False
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # covered by a block, or fixed: no warning
        optimize_iterative(
            _scatter_model(),
            data,
            blocks=["latents", "flux:data"],
            fixed_pars={"flux": {"err": {"s": jnp.asarray(0.05)}}},
            max_cycles=1,
            progress=False,
        )
        optimize_iterative(
            _scatter_model(),
            data,
            blocks=[
                "latents",
                "flux:data",
                ParameterBlock("s", "flux:err", num_steps=5),
            ],
            max_cycles=1,
            progress=False,
        )


def test_bare_output_name_in_an_svi_block_optimises_its_err_parameters_too(truth):
    """Upstream's ParameterBlock: params="<output>" means all of that output's parameters."""
    _, _, _, y = truth
    m = _scatter_model()
    data = LuxData(flux=OutputData(y, err=0.05))
    start = {"flux": {"err": {"s": jnp.asarray(0.5)}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = optimize_iterative(
            m,
            data,
            blocks=["latents", ParameterBlock("flux", "flux", num_steps=50)],
            initial_params=start,
            max_cycles=1,
            progress=False,
        )
    assert float(res.params["flux"]["err"]["s"]) != pytest.approx(0.5)


def test_a_block_over_a_list_of_parameter_groups(truth):
    """Upstream's `ParameterBlock.params` may be a list of groups, optimised together."""
    z, _, _, y = truth
    m = Lux(L)
    m.register_output("flux", AffineTransform(P))
    m.register_output("twin", LinearTransform(P))
    data = LuxData(flux=OutputData(y, err=0.05), twin=OutputData(y, err=0.1))
    fixed = {"latents": jnp.asarray(z)}
    kw = {"fixed_pars": fixed, "max_cycles": 1, "progress": False}
    both = ParameterBlock("outs", ["flux:data", "twin:data"], optimizer="least_squares")
    res = optimize_iterative(m, data, blocks=[both], **kw)
    ref = optimize_iterative(m, data, blocks=["flux", "twin"], **kw)
    for name in ("flux", "twin"):
        np.testing.assert_allclose(
            res.params[name]["data"]["A"], ref.params[name]["data"]["A"], rtol=1e-6
        )
    zero = {
        "flux": {"data": {"A": jnp.zeros((P, L)), "b": jnp.zeros(P)}},
        "twin": {"data": {"A": jnp.zeros((P, L))}},
    }
    svi = ParameterBlock("svi", ["flux:data", "twin"], num_steps=5)
    res = optimize_iterative(m, data, blocks=[svi], initial_params=zero, **kw)
    assert np.all(res.params["flux"]["data"]["A"] != 0)  # both groups moved
    assert np.all(res.params["twin"]["data"]["A"] != 0)
    with pytest.raises(ConfigError, match="unknown parameter group"):
        optimize_iterative(m, data, blocks=[ParameterBlock("x", ["flux", "nope"])], **kw)
