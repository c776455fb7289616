"""A first fit compiles only its real programs: no one-op programs around them (issue 37).

Eagerly, every JAX operation is a small XLA program compiled once per process:
the root keys' split, a dtype cast, the raw features under ``vmap`` in the linear
start, a row slice. These are computed on the host instead, with the same values.
Whether something compiles is checked in a fresh process (in this one, earlier
tests have compiled and cached the same small programs).
"""

import json
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from orrery.sbi._host_keys import epoch_draws, permutation, seed_key, split_seed, threefry2x32
from orrery.sbi.training import SBITrainer
from orrery.sbi.training._optim import make_optimizer, make_schedule
from orrery.sbi.training._programs import host_unravel, make_setup, returns_vector, run_setup


def _data(key) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**31 - 1])
@pytest.mark.parametrize("num", [1, 3, 5])
def test_host_keys_are_jax_keys(seed, num):
    host = np.stack([_data(k) for k in split_seed(seed, num)])
    np.testing.assert_array_equal(host, _data(jax.random.split(jax.random.key(seed), num)))
    np.testing.assert_array_equal(_data(seed_key(seed)), _data(jax.random.key(seed)))


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_seeds_outside_the_host_range_go_through_jax(seed):
    with jax.enable_x64(True):  # 2**31 is a seed only with 64-bit integers
        host = np.stack([_data(k) for k in split_seed(seed, 3)])
        np.testing.assert_array_equal(host, _data(jax.random.split(jax.random.key(seed), 3)))


def test_threefry_matches_the_known_answer():
    # Random123's known-answer vector for Threefry-2x32, 20 rounds (key and counter
    # all ones), which JAX's own tests use as well.
    ones = np.array([0xFFFFFFFF, 0xFFFFFFFF], np.uint32)
    with np.errstate(over="ignore"):
        a, b = threefry2x32(ones[0], ones[1], ones[:1], ones[1:])
    assert (int(a[0]), int(b[0])) == (0x1CB996FC, 0xBB002BE7)


@pytest.mark.parametrize("seed", [0, 3, 2**31 - 1])
@pytest.mark.parametrize("n", [1, 2, 7, 256, 9000, 100_003])
def test_host_permutation_is_jax_permutation(seed, n):
    key = jax.random.key(seed)
    np.testing.assert_array_equal(
        permutation(_data(key), n), np.asarray(jax.random.permutation(key, n))
    )


def test_host_permutation_breaks_ties_as_jax_does():
    # 2**17 rows draw 32-bit sort keys with collisions (about two per round): the
    # order of tied rows is the stable sort's, in both.
    key = jax.random.key(5)
    n = 2**17
    bits = np.asarray(jax.random.bits(jax.random.split(jax.random.split(key)[0])[1], (n,)))
    assert len(np.unique(bits)) < n  # the case is exercised
    np.testing.assert_array_equal(
        permutation(_data(jax.random.split(key)[0]), n),
        np.asarray(jax.random.permutation(jax.random.split(key)[0], n)),
    )


@pytest.mark.parametrize("n, batch", [(9000, 256), (1000, 64), (256, 256)])
def test_epoch_draws_are_the_device_epochs_draws(n, batch):
    # What the epoch program drew from its key before issue 37 moved it to the host.
    key = jax.random.fold_in(jax.random.key(11), 4)
    order, step_keys = epoch_draws(_data(key), n, batch)
    perm_key, step_key = jax.random.split(key)
    steps = n // batch
    expect = np.asarray(jax.random.permutation(perm_key, n))[: steps * batch]
    np.testing.assert_array_equal(order, expect.reshape(steps, batch))
    np.testing.assert_array_equal(step_keys, _data(jax.random.split(step_key, steps)))
    assert order.dtype == np.int32 and step_keys.dtype == np.uint32


def test_epoch_draws_under_another_prng_go_through_jax():
    with jax.default_prng_impl("rbg"):
        key = jax.random.key(2)
        order, step_keys = epoch_draws(_data(key), 600, 128)
        perm_key, step_key = jax.random.split(key)
        expect = np.asarray(jax.random.permutation(perm_key, 600))[:512].reshape(4, 128)
        np.testing.assert_array_equal(order, expect)
        np.testing.assert_array_equal(step_keys, _data(jax.random.split(step_key, 4)))


_FRESH = r"""
import json, sys
import jax, jax.monitoring
import numpy as np
events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, s, **kw: events.append(name) if name.endswith("backend_compile_duration") else None
)
from orrery.sbi._host_keys import seed_key, split_seed
from orrery.sbi.encoders import build_observation_encoder
schema = {"x": {"modality": "photometry", "size": 5, "has_uncertainties": False}}
encoder = build_observation_encoder(schema, embedding_dim=4, linear_skip=True, key=seed_key(1))
counts = {}
start = len(events)
split_seed(0, 3), seed_key(0)
counts["keys"] = len(events) - start
start = len(events)
obs = {"x": {"values": np.ones((7, 5), np.float32)}}
np.asarray(jax.vmap(encoder.raw_features)(obs))
counts["raw_features"] = len(events) - start
start = len(events)
jax.random.split(jax.random.key(2), 3)  # the eager split: shows that compiles are counted
counts["eager_split"] = len(events) - start
json.dump(counts, sys.stdout)
"""


def test_keys_and_raw_features_compile_nothing_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["eager_split"] > 0
    assert counts["keys"] == 0 and counts["raw_features"] == 0


def _mlp_loss(model, batch, key):
    jitter = 1.0 + 0.1 * jax.random.uniform(key, ())
    return jitter * jnp.mean((jax.vmap(model)(batch["x"]) - batch["y"]) ** 2)


def test_kept_train_loss_of_host_rows_equals_that_of_device_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)).astype(np.float32)
    model = eqx.nn.MLP(3, "scalar", 8, 1, key=jax.random.key(2))
    trainer = SBITrainer(learning_rate=1e-2, batch_size=32, num_epochs=2, progress=False)
    host = {"x": x[:150], "y": y[:150]}
    val = {"x": x[150:], "y": y[150:]}
    _, on_host = trainer.fit(model, _mlp_loss, host, val)
    _, on_device = trainer.fit(model, _mlp_loss, jax.tree.map(jnp.asarray, host), val)
    kept = on_host.validation_metrics["kept_train_loss"]
    assert np.isfinite(kept)
    assert kept == on_device.validation_metrics["kept_train_loss"]


_FIRST_FIT = r"""
import json, sys
import jax, jax.monitoring
import numpy as np
names = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, s, **kw: names.append(name) if name.endswith("backend_compile_duration") else None
)
from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
rng = np.random.default_rng(0)
theta = rng.normal(size=(300, 3)).astype(np.float32)
x = (theta + 0.1 * rng.normal(size=theta.shape)).astype(np.float32)
post = ConditionalFlowPosterior.recommended(3, 300, seed=0, num_epochs=2)
post.fit(SimulationDataset.from_arrays(theta, x, seed=0))
json.dump({"programs": len(names)}, sys.stdout)
"""


def test_a_recipe_first_fit_compiles_four_programs_in_a_fresh_process():
    # Issue 37's guard against one-op programs creeping back (a host array turned into a
    # device array with `jnp.asarray` compiles a staging program per shape): the build's
    # two one-op programs (transcendentals, for XLA's bits), the epoch and validation.
    proc = subprocess.run([sys.executable, "-c", _FIRST_FIT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["programs"] <= 4


@pytest.mark.parametrize("weight_decay, clip", [(0.0, None), (1e-4, 5.0)])
def test_setup_on_the_host_is_the_compiled_setup(weight_decay, clip):
    schedule = make_schedule(
        learning_rate=1e-3,
        use_cosine_schedule=True,
        steps_per_epoch=7,
        horizon_epochs=30,
        warmup_fraction=0.02,
        warmup_epochs=None,
        min_learning_rate=1e-5,
    )
    optimizer = make_optimizer(
        schedule, weight_decay=weight_decay, gradient_clip_norm=clip, scalable=True
    )
    setup = make_setup(optimizer, schedule)
    params = {"w": jnp.ones((3, 4)), "b": jnp.arange(4.0)}
    end_steps = np.arange(1, 31) * 7 - 1
    host = run_setup(setup, params, seed_key(3), end_steps)
    device = setup(params, seed_key(3), jnp.asarray(end_steps))
    assert jax.tree.structure(host) == jax.tree.structure(device)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(device), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    # optimiser state and keys bit for bit; the reported rates to rounding (NumPy's cos,
    # and XLA fuses the schedule's arithmetic in its program, as again in the epoch)
    (opt_h, lrs_h, keys_h, val_h), (opt_d, lrs_d, keys_d, val_d) = host, device
    host_leaves = jax.tree.leaves((opt_h, keys_h, val_h))
    for a, b in zip(host_leaves, jax.tree.leaves((opt_d, keys_d, val_d)), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(lrs_h, lrs_d, rtol=1e-5, atol=0)


def test_the_host_split_of_the_trained_vector_is_ravel_pytrees():
    params = {
        "w": jax.random.normal(jax.random.key(0), (3, 4)),
        "b": jnp.arange(4.0),
        "s": jnp.float32(2.5),
        "stack": jax.random.normal(jax.random.key(1), (2, 5, 3)),
    }
    flat, unravel = ravel_pytree(params)
    ours, theirs = host_unravel(params)(flat), unravel(flat)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # one dtype on a CPU: the epoch returns the vector; mixed dtypes keep the split in it
    assert returns_vector(params) == (jax.default_backend() == "cpu")
    assert not returns_vector({**params, "n": jnp.arange(3)})
