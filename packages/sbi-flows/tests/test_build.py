"""The compiled model build gives exactly the eager build, for every family and seed."""

import gc
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
from orrery.sbi._config import FlowSpec
from orrery.sbi._posterior import build as _build
from orrery.sbi._xla import compiler_options


def _prepared(family: str, seed: int, **settings) -> ConditionalFlowPosterior:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(64, 3))
    data = SimulationDataset.from_arrays(theta, theta + rng.normal(size=(64, 3)), seed=0)
    posterior = ConditionalFlowPosterior(
        3,
        embedding_dim=8,
        hidden_dim=8,
        num_coupling_layers=2,
        autoregressive_transform_units=2,
        flow_family=family,
        seed=seed,
        **settings,
    )
    posterior._adopt_dataset_metadata(data, data.split_arrays("train"))
    return posterior


def _assert_same(a, b) -> None:
    leaves_a = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    leaves_b = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        # Bit-equal but for XLA's fused rounding (a few ULP in the BNAF's weight norms).
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


# affine uses flowjax's Coupling (closure cells), MAF has its own cells, the spline
# couplings none, the BNAF none but XLA-fused weight norms.
@pytest.mark.parametrize(
    "family", ["affine", "autoregressive", "neural_autoregressive", "spline_affine", "spline"]
)
def test_compiled_build_equals_eager_build(family):
    z = jr.normal(jr.key(1), (4, 3))
    seeds = (0, 1) if family == "affine" else (0,)  # seed 1 reuses the compiled program
    for seed in seeds:
        posterior = _prepared(family, seed)
        model = posterior._build_model()
        # the build key is split from the seed's root key (issue 34)
        encoder, flow = posterior._build_networks(posterior._root_keys()[0])
        _assert_same(model.encoder, encoder)
        _assert_same(model.flow, flow)
        cond = jr.normal(jr.key(2), (4, 8))
        # leaves a few ULP apart, log-densities to ~1e-6 relative
        np.testing.assert_allclose(
            model.flow.log_prob(z, condition=cond), flow.log_prob(z, condition=cond), rtol=1e-5
        )
        # The repaired closures are concrete: the flow runs outside any trace.
        assert jnp.all(jnp.isfinite(model.flow.sample(jr.key(3), (2,), condition=cond[0])))
    specs = [k[1] for k in _build._BUILDERS if len(k) > 1 and isinstance(k[1], FlowSpec)]
    assert any(spec.flow_family == family for spec in specs)


@pytest.mark.filterwarnings("ignore:A JAX array is being set as static")
def test_seeds_differ_and_unrepairable_leaks_fall_back():
    first = _prepared("affine", 0)
    a = first._build_model()  # compiled by the test above or here
    b = _prepared("affine", 1)._build_model()
    assert not np.array_equal(a.encoder.fusion.layers[0].weight, b.encoder.fusion.layers[0].weight)
    # The cached program does not keep the posterior that built it alive.
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None

    class Holder(eqx.Module):
        weight: jax.Array
        kept: object = eqx.field(static=True)

    def make(key):  # a tracer in a static field: no cell to repair, so built eagerly
        w = jr.normal(key, (2,))
        return Holder(w, (w * 2,))

    out = _build.compiled_build(make, jr.key(0), ("leaky-test",))
    assert not isinstance(out.kept[0], jax.core.Tracer)
    np.testing.assert_array_equal(out.kept[0], 2 * out.weight)
    assert ("leaky-test",) not in _build._BUILDERS


def test_training_settings_share_the_build_program_and_architecture_settings_do_not():
    _prepared("affine", 0)._build_model()
    before = set(_build._BUILDERS)
    training = dict(num_epochs=9, learning_rate=3e-4, batch_size=7, lr_decay_patience=2)
    model = _prepared("affine", 0, **training)._build_model()
    assert set(_build._BUILDERS) == before
    _assert_same(model.flow, _prepared("affine", 0)._build_model().flow)
    for architecture in (
        dict(conditioner_depth=1),
        dict(encoder_linear_skip=True),
        dict(n_wavelengths=5),
    ):
        _prepared("affine", 0, **architecture)._build_model()
        assert len(set(_build._BUILDERS) - before) == 1, architecture
        before = set(_build._BUILDERS)


def test_the_package_compiler_options_are_accepted_and_keep_the_numbers():
    options = compiler_options()
    if jax.default_backend() == "cpu":
        assert options == {
            "xla_cpu_use_fusion_emitters": False,
            "xla_backend_optimization_level": 1,
        }
    x = jnp.linspace(-2.0, 2.0, 7)
    compiled = jax.jit(lambda v: jnp.sin(v) * jnp.exp(v)).lower(x).compile(compiler_options=options)
    np.testing.assert_allclose(compiled(x), np.sin(x) * np.exp(x), rtol=1e-6)
