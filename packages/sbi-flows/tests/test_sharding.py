"""batch_sample_posterior with the batch axis split over 4 (forced) host devices."""

import os
import subprocess
import sys
import textwrap

import pytest

from orrery.interface import ConfigError

_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(512, 2))
    post = ConditionalFlowPosterior(2, embedding_dim=4, hidden_dim=8, num_coupling_layers=2,
                                    num_epochs=1, batch_size=128)
    post.fit(SimulationDataset.from_arrays(theta, theta + 0.1))
    emb = rng.normal(size=(10, 4)).astype(np.float32)  # 10 does not divide by 4: padded
    one = post.batch_sample_posterior(emb, 16, base_seed=5)
    four = post.batch_sample_posterior(emb, 16, base_seed=5, devices="all")
    two = post.batch_sample_posterior(emb, 16, base_seed=5, devices=jax.devices()[:2])
    assert four.shape == (10, 16, 2), four.shape
    print(float(np.max(np.abs(one - four))), float(np.max(np.abs(one - two))))
    """
)


def test_sharded_batch_sampling_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    diff_four, diff_two = map(float, out.stdout.split())
    assert diff_four < 1e-5 and diff_two < 1e-5


@pytest.mark.parametrize("devices", ["gpu", [], ["cpu:0"]])
def test_bad_devices_are_named(devices):
    from orrery.sbi._sharding import resolve_devices

    with pytest.raises(ConfigError, match="devices"):
        resolve_devices(devices)
