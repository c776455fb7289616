"""The size of the ensemble's compiled programs: pinned, and independent of the problem's size.

Compile time follows program size, so these tests guard the first call's cost
without timing anything: a change that multiplies a program (a Python loop
unrolled over steps or members, a branch per data row) fails here. Only tracing
and lowering to StableHLO run, on the programs ``run`` compiles (no XLA
compilation, a fraction of a second each).

When a deliberate change moves a pin, update it (with the new count in the
commit message); the margin absorbs JAX-version noise, not a new design.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from orrery.ensemble import EnsembleMAP, EnsembleVI
from orrery.ensemble import map as ens_map
from orrery.ensemble import vi as ens_vi

#: relative margin around each pin
MARGIN = 0.25
#: StableHLO ops, MLP 1 -> 8 -> 8 -> 1 with Adam (jax 0.10)
PINS = {"init": 964, "run_full": 382, "run_minibatch": 679, "vi_run": 509}


def _ops(lowered) -> int:
    return sum(1 for line in lowered.as_text().splitlines() if " = " in line)


def _within(count: int, pin: int) -> bool:
    return abs(count - pin) <= MARGIN * pin


def _init_fn(key):
    return eqx.nn.MLP(1, 1, 8, 2, activation=jnp.tanh, key=key)


def _log_joint(model, x, y):
    pred = jax.vmap(model)(x)[:, 0]
    return -0.5 * jnp.sum((pred - y) ** 2), 0.0


def _zeros(leaf):
    # host zeros stand in for the state's arrays: lowering needs their shapes only
    return np.zeros(leaf.shape, leaf.dtype) if isinstance(leaf, jax.ShapeDtypeStruct) else leaf


def _runner(members: int) -> EnsembleMAP:
    return EnsembleMAP(_log_joint, _init_fn, optax.adam(1e-2), members, 0.0)


def _map_programs(members: int, n: int, steps: int, batch: int | None) -> tuple[int, int]:
    runner = _runner(members)
    key = jax.random.PRNGKey(0)
    init = ens_map._init.lower(runner, key, None)
    shapes = eqx.filter_eval_shape(ens_map._init, runner, key, None)
    state = jax.tree.map(_zeros, shapes, is_leaf=lambda a: isinstance(a, jax.ShapeDtypeStruct))
    x, y = np.zeros((n, 1), np.float32), np.zeros((n,), np.float32)
    bsz = n if batch is None else batch
    start = jnp.asarray(0, jnp.int32)
    run = ens_map._run_chunk.lower(runner, state, x, y, key, start, steps, bsz, n / bsz, None)
    return _ops(init), _ops(run)


@pytest.fixture(scope="module")
def map_sizes():
    return {
        shape: _map_programs(*shape)
        for shape in [(16, 256, 600, None), (3, 4096, 20, None), (16, 256, 600, 32)]
    }


def test_map_programs_are_pinned(map_sizes):
    init, run = map_sizes[(16, 256, 600, None)]
    assert _within(init, PINS["init"]), init
    assert _within(run, PINS["run_full"]), run
    minibatch = map_sizes[(16, 256, 600, 32)][1]
    assert _within(minibatch, PINS["run_minibatch"]), minibatch


def test_map_programs_do_not_grow_with_members_data_or_steps(map_sizes):
    # the steps run as one lax.scan and the members under vmap: nothing is unrolled
    assert map_sizes[(3, 4096, 20, None)] == map_sizes[(16, 256, 600, None)]


def _model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)


def _guide(x, y=None):
    loc = numpyro.param("loc", jnp.zeros(2))
    scale = numpyro.param("scale", 0.3 * jnp.ones(2), constraint=dist.constraints.positive)
    numpyro.sample("w", dist.Normal(loc, scale).to_event(1))


def _vi_program(members: int, n: int, steps: int) -> int:
    runner = EnsembleVI(_model, _guide, optax.adam(1e-2), ensemble_size=members)
    x, y = np.ones((n, 2), np.float32), np.zeros((n,), np.float32)
    shapes = eqx.filter_eval_shape(ens_vi._vi_init, runner, jax.random.PRNGKey(0), (x, y), {}, None)
    state = jax.tree.map(_zeros, shapes, is_leaf=lambda a: isinstance(a, jax.ShapeDtypeStruct))
    return _ops(ens_vi._vi_chunk.lower(runner, state, (x, y), {}, steps, None))


def test_vi_program_is_pinned_and_does_not_grow():
    small, large = _vi_program(2, 16, 5), _vi_program(8, 512, 300)
    assert small == large
    assert _within(large, PINS["vi_run"]), large
