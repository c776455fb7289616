"""Data-parallel fit: 4 (forced) host devices give one device's history and model.

From memory and from a streamed campaign store (one window, and several windows
of which each device reads only its columns).
"""

import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent(
    """
    import equinox as eqx, jax, numpy as np
    from orrery.interface import ConfigError
    from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
    n_dev = jax.device_count()
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(300, 2))
    ds = SimulationDataset.from_arrays(theta, theta + 0.1 * rng.normal(size=theta.shape))

    def fit(devices, batch_size=32):
        post = ConditionalFlowPosterior(2, embedding_dim=4, hidden_dim=8, num_coupling_layers=1,
                                        num_epochs=2, batch_size=batch_size, seed=3)
        return post, post.fit(ds, devices=devices)

    p1, a1 = fit(None)
    p4, a4 = fit("all")
    if n_dev == 4:
        try:
            fit("all", batch_size=30)
        except ConfigError as err:
            assert "batch_size" in str(err) and "4 devices" in str(err), err
        else:
            raise AssertionError("batch_size=30 over 4 devices was accepted")
    assert a4.trainer_metadata["devices"] == n_dev, a4.trainer_metadata
    leaves = lambda p: jax.tree.leaves(eqx.filter(p.model, eqx.is_array))
    assert all(len(a.sharding.device_set) == 1 for a in leaves(p4))  # handed back local
    d_params = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(leaves(p1), leaves(p4), strict=True))
    d_loss = max(abs(x - y) for k in ("train_loss", "val_loss")
                 for x, y in zip(a1.history[k], a4.history[k], strict=True))
    print(n_dev, d_params, d_loss)
    """
)


def _run(env_extra: dict) -> tuple[int, float, float]:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    n_dev, d_params, d_loss = out.stdout.split()[-3:]
    return int(n_dev), float(d_params), float(d_loss)


def test_four_devices_equal_one_device():
    n_dev, d_params, d_loss = _run(
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    )
    assert n_dev == 4
    # float32 sums of the same terms in another order (per-device partial sums,
    # then an all-reduce): a few ulps per step, compounded over a handful of steps.
    assert d_params < 1e-5 and d_loss < 1e-5, (d_params, d_loss)


_STORE_SCRIPT = textwrap.dedent(
    """
    import concurrent.futures as cf, sys
    import equinox as eqx, jax, numpy as np
    from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate
    from orrery.sbi.training import _streaming
    n_dev = jax.device_count()

    def sim(theta):
        return {"auxiliary": np.sin(3 * theta[:, :1] + np.linspace(0, 1, 6)) + theta[:, 1:]}

    path = simulate(sim, [[0.0, 1.0], [-1.0, 1.0]], 400, sys.argv[1], chunk_size=100, seed=1,
                    executor=cf.ThreadPoolExecutor(1))
    parts = []
    original = _streaming.SplitStream.epoch_groups

    def spy(self, *args, part=(0, 1), **kwargs):
        for group in original(self, *args, part=part, **kwargs):
            parts.append((part, jax.tree.leaves(group)[0].shape[1]))
            yield group

    _streaming.SplitStream.epoch_groups = spy
    worst = []
    for budget in (None, 20_000):  # one window; windows of one or two batches
        kw = {} if budget is None else {"memory_budget": budget}
        ds = SimulationDataset.from_store(path, **kw)
        windows = -(-ds.n_train // ds.window_rows)
        runs = []
        for devices in (None, "all"):
            post = ConditionalFlowPosterior(
                2, embedding_dim=4, hidden_dim=8, num_coupling_layers=1, num_epochs=2,
                batch_size=32, seed=3, stable_inverse_forward_max_abs_error_threshold=None,
                stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
                stable_cube_edge_hit_rate_threshold=None)
            art = post.fit(ds, devices=devices)
            runs.append((jax.tree.leaves(eqx.filter(post.model, eqx.is_array)), art.history))
        (l1, h1), (l4, h4) = runs
        d_params = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(l1, l4, strict=True))
        d_loss = max(abs(x - y) for k in ("train_loss", "val_loss")
                     for x, y in zip(h1[k], h4[k], strict=True))
        worst.append((windows, d_params, d_loss))
    # one process holds all 4 devices: it reads whole batches, in one part
    assert {p for p, _ in parts} == {(0, 1)}, parts
    print(n_dev, *[x for w in worst for x in w])
    """
)


def test_four_devices_from_a_store_equal_one_device(tmp_path):
    pytest.importorskip("zarr")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", _STORE_SCRIPT, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    n_dev, *rest = out.stdout.split()[-7:]
    assert int(n_dev) == 4
    (w_one, p_one, l_one), (w_many, p_many, l_many) = (
        (int(rest[i]), float(rest[i + 1]), float(rest[i + 2])) for i in (0, 3)
    )
    assert w_one == 1 and w_many > 1, (w_one, w_many)
    # as from memory: the same float32 terms summed in another order
    for d in (p_one, l_one, p_many, l_many):
        assert d < 1e-5, rest


@pytest.mark.gpu
def test_all_gpus_equal_one_gpu():
    n_dev, d_params, d_loss = _run({})
    # GPU matmul kernels differ with the per-device batch shape: looser than CPU.
    assert d_params < 1e-3 and d_loss < 1e-3, (n_dev, d_params, d_loss)


class _Dev:
    def __init__(self, process_index: int):
        self.process_index = process_index


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        ((0, 0, 1, 1), ((0, 2), 0)),  # first half of every batch
        ((1, 1, 0, 0), ((1, 2), 16)),  # second half: columns from 16 of 32
        ((0, 0, 0, 0), ((0, 1), 0)),  # one process: whole batches
        ((0, 1, 0, 1), ((0, 1), 0)),  # not consecutive: whole batches, sliced per device
        ((1, 0, 0, 0), ((0, 1), 0)),  # 3 of 4 blocks: no equal part, whole batches
    ],
)
def test_each_process_reads_its_devices_columns(owners, expected):
    from orrery.sbi.training._data_parallel import _local_part

    assert _local_part(tuple(_Dev(p) for p in owners), 32) == expected
