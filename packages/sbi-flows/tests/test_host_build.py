"""The network build evaluated on the host from its jaxpr (`_host_eval`).

It must give the compiled build's arrays bit for bit (so a fit is unchanged),
compile nothing, and hand anything it does not reproduce exactly to the compiled
build.
"""

from typing import Any

import equinox as eqx
import jax
import jax.monitoring
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
from orrery.sbi._posterior import _host_eval
from orrery.sbi._posterior import build as _build
from orrery.sbi._xla import compiler_options


def _host(fn, *args):
    """``fn(*args)`` through the host interpreter (keys passed as typed keys)."""
    closed = jax.make_jaxpr(fn)(*args)
    data = [np.asarray(jr.key_data(a)) if _host_eval._is_key(a) else np.asarray(a) for a in args]
    return _host_eval.evaluate(closed, data, compiler_options())


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


RANDOM_OPS = {
    "split": lambda k: jr.key_data(jr.split(k, 3)),
    "split_2d": lambda k: jr.key_data(jr.split(k, (2, 3))),
    "split_of_split": lambda k: jr.key_data(jax.vmap(lambda s: jr.split(s, 5))(jr.split(k, 4))),
    "fold_in": lambda k: jr.key_data(jr.fold_in(k, 7)),
    "bits": lambda k: jr.bits(k, (5, 7)),
    "bits_u8": lambda k: jr.bits(k, (9,), dtype=jnp.uint8),
    "bits_u16": lambda k: jr.bits(k, (9,), dtype=jnp.uint16),
    "permutation": lambda k: jr.permutation(k, 37),
    "randint": lambda k: jr.randint(k, (11,), -5, 13),
    "choice": lambda k: jr.choice(k, 10, (4,), replace=False),
    "vmapped_uniform": lambda k: jax.vmap(lambda s: jr.uniform(s, (3,)))(jr.split(k, 4)),
}


@pytest.mark.parametrize("op", sorted(RANDOM_OPS))
@pytest.mark.parametrize("seed", [0, 12345])
def test_threefry_and_integer_ops_are_bit_exact(op, seed):
    key = jr.key(seed)
    (host,) = _host(RANDOM_OPS[op], key)
    expected = np.asarray(RANDOM_OPS[op](key))
    assert host.dtype == expected.dtype and host.shape == expected.shape
    np.testing.assert_array_equal(host, expected)


def test_float64_draws_under_x64():
    with jax.enable_x64(True):
        key = jr.key(3)
        bits = lambda k: jr.bits(k, (6,), dtype=jnp.uint64)
        np.testing.assert_array_equal(_host(bits, key)[0], np.asarray(bits(key)))
        uniform = lambda k: jr.uniform(k, (50,), jnp.float64, -2.0, 3.0)
        (host,) = _host(uniform, key)
        assert host.dtype == np.float64
        # op by op (no fused multiply-add): within an ULP of XLA's fused program
        np.testing.assert_allclose(host, np.asarray(uniform(key)), rtol=0, atol=1e-15)
        perm = lambda k: jr.permutation(k, jnp.arange(20, dtype=jnp.int64))
        np.testing.assert_array_equal(_host(perm, key)[0], np.asarray(perm(key)))


def test_what_it_cannot_reproduce_is_refused():
    key = jr.key(0)
    with pytest.raises(_host_eval.Unsupported, match="primitive cumsum"):
        _host(lambda x: jnp.cumsum(x), jnp.arange(3.0))
    with pytest.raises(_host_eval.Unsupported, match="division by zero"):
        _host(lambda a: a // 0, jnp.arange(3))
    with pytest.raises(_host_eval.Unsupported, match="key-typed output"):
        _host(lambda k: jr.split(k), key)
    with pytest.raises(_host_eval.Unsupported, match="bfloat16"):  # NumPy rounds otherwise
        _host(lambda x: x * 3, jnp.ones(3, jnp.bfloat16))
    with pytest.raises(_host_eval.Unsupported, match="out of range"):
        _host(lambda x: x.astype(jnp.int32), jnp.array([3e9], jnp.float32))


def test_transcendentals_run_as_one_op_programs():
    key = jr.key(5)
    draw = lambda k: jr.normal(k, (40,))  # erf_inv, as XLA computes it
    (host,) = _host(draw, key)
    np.testing.assert_allclose(host, np.asarray(draw(key)), rtol=1e-6, atol=1e-7)
    f = lambda x: jnp.log(-jnp.expm1(-x)) + x  # the affine transformer's template
    x = jnp.array([0.99, 0.5, 3.0], jnp.float32)
    options: dict[str, Any] = {**compiler_options()}
    compiled = jax.jit(f).lower(x).compile(compiler_options=options)
    np.testing.assert_array_equal(_host(f, x)[0], np.asarray(compiled(x)))


def _recipe(family: str, seed: int) -> ConditionalFlowPosterior:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(256, 3))
    data = SimulationDataset.from_arrays(theta, theta + 0.1 * rng.normal(size=(256, 3)), seed=0)
    posterior = ConditionalFlowPosterior.recommended(3, 2000, seed=seed, flow_family=family)
    posterior._adopt_dataset_metadata(data, data.split_arrays("train"))
    return posterior


@pytest.fixture
def compiles():
    """Backend compiles seen while the test runs."""
    seen: list[float] = []

    def listen(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event.endswith("backend_compile_duration"):
            seen.append(duration_secs)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listen)


# The recipe's flows (linear start, encoder with a linear skip): the host build gives
# the compiled build's arrays bit for bit, so a recipe fit is unchanged.
@pytest.mark.parametrize("family", ["spline_affine", "spline", "affine", "autoregressive"])
def test_host_build_equals_the_compiled_build_bit_for_bit(family, compiles):
    builder = _build._Builder()  # traced and compiled once, as for a second fit
    for seed in (0, 7):
        posterior = _recipe(family, seed)
        key = posterior._root_keys()[0]
        builder.maker[0] = posterior._build_networks
        with jax.enable_x64(False):
            before = len(compiles)
            host = builder.host(key)
            assert builder.plans[False] is not None  # not refused
            # nothing compiled but the one-op programs of `_XLA_OPS` (a transcendental
            # or two in the affine transformer's template, compiled once per process)
            assert len(compiles) - before <= 2
            # the closure cells (flowjax's transformer templates) are outputs too
            host_cells = [np.asarray(cell.cell_contents) for cell in builder.cells]
            compiled = builder.compiled(key)
            compiled_cells = [np.asarray(cell.cell_contents) for cell in builder.cells]
        host_leaves = _leaves(host) + host_cells
        compiled_leaves = _leaves(compiled) + compiled_cells
        assert len(host_leaves) == len(compiled_leaves) > 10
        for a, b in zip(host_leaves, compiled_leaves, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def _compare_builds(posterior: ConditionalFlowPosterior, seeds=(0,), exact: bool = True) -> None:
    """Host and compiled builds of ``posterior``'s networks: arrays and closure cells equal
    (integers always; floats to a few ULP unless ``exact``)."""
    builder = _build._Builder()
    builder.maker[0] = posterior._build_networks
    for seed in seeds:
        key = jr.fold_in(posterior._root_keys()[0], seed)
        with jax.enable_x64(False):
            host = _leaves(builder.host(key))
            assert builder.plans[False] is not None
            host += [np.asarray(cell.cell_contents) for cell in builder.cells]
            compiled = _leaves(builder.compiled(key))
            compiled += [np.asarray(cell.cell_contents) for cell in builder.cells]
        assert len(host) == len(compiled)
        for a, b in zip(host, compiled, strict=True):
            assert a.dtype == b.dtype
            if exact or a.dtype.kind != "f":
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


# conv1d (the recipe's default) and mlp: bit for bit. The patch encoder's positions,
# 0.02 * normal draws, are a few ULP off: XLA's simplifier refolds the constants
# around erf_inv in the whole program, not in the one-op program (as in the eager build).
@pytest.mark.parametrize("encoder", ["conv1d", "patch", "mlp"])
def test_spectrum_and_photometry_encoders_build_on_the_host(encoder):
    rng = np.random.default_rng(0)
    theta = rng.uniform(size=(128, 2))
    spec = np.sin(np.linspace(0, 3, 16) * (1 + theta[:, :1])) + 0.05 * rng.normal(size=(128, 16))
    data = SimulationDataset.from_arrays(
        theta,
        {"spec": spec, "photometry": theta + 0.05 * rng.normal(size=(128, 2))},
        modalities={"spec": "spectrum"},
        uncertainties={"spec": np.full((128, 16), 0.05)},
        seed=0,
    )
    posterior = ConditionalFlowPosterior.recommended(
        2, 128, seed=0, n_wavelengths=16, spectrum_encoder_type=encoder, num_coupling_layers=2
    )
    posterior._adopt_dataset_metadata(data, data.split_arrays("train"))
    _compare_builds(posterior, exact=encoder != "patch")


def test_a_recipe_build_compiles_nothing_and_is_traced_once(compiles, monkeypatch):
    _recipe("spline_affine", 0)._build_model()  # this architecture's jaxpr is cached
    traces = []
    real = eqx.filter_make_jaxpr
    monkeypatch.setattr(_build.eqx, "filter_make_jaxpr", lambda f: traces.append(f) or real(f))
    before = len(compiles)
    a = _recipe("spline_affine", 1)._build_model()
    b = _recipe("spline_affine", 2)._build_model()
    assert traces == [] and len(compiles) == before
    assert not np.array_equal(_leaves(a.flow)[0], _leaves(b.flow)[0])
    # the repaired closures are concrete: the flow runs outside any trace
    cond = jnp.zeros((2, a.flow.cond_shape[0]))
    assert jnp.all(jnp.isfinite(a.flow.log_prob(jnp.zeros((2, 3)), condition=cond)))


def test_a_refused_jaxpr_falls_back_to_the_compiled_build(compiles):
    class Net(eqx.Module):
        weight: jax.Array
        order: jax.Array

    def make(key):  # the host interpreter has no cumsum
        k1, k2 = jr.split(key)
        return Net(jnp.cumsum(jr.uniform(k1, (4, 3)), axis=0), jr.permutation(k2, 6))

    cache_key = ("host-fallback-test",)
    first = _build.compiled_build(make, jr.key(0), cache_key)
    assert _build._BUILDERS[cache_key].plans[False] is None
    assert _build._BUILDERS[cache_key].program is not None
    expected = make(jr.key(0))
    np.testing.assert_array_equal(first.order, expected.order)
    np.testing.assert_allclose(first.weight, expected.weight, rtol=1e-6)
    before = len(compiles)
    second = _build.compiled_build(make, jr.key(1), cache_key)  # the cached program
    assert len(compiles) == before
    np.testing.assert_array_equal(second.order, make(jr.key(1)).order)
    _build._BUILDERS.pop(cache_key)
