"""Data-parallel fit: 4 (forced) host devices give one device's history and model."""

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


@pytest.mark.gpu
def test_all_gpus_equal_one_gpu():
    n_dev, d_params, d_loss = _run({})
    # GPU matmul kernels differ with the per-device batch shape: looser than CPU.
    assert d_params < 1e-3 and d_loss < 1e-3, (n_dev, d_params, d_loss)
