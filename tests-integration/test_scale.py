"""Pipeline 5: ensemble members and SBI sampling sharded over 4 host devices equal one device.

The example runs in a subprocess because the number of host devices is fixed
when JAX starts (``--xla_force_host_platform_device_count=4``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "examples" / "sharded_scale.py"


def _run(env_updates: dict[str, str]) -> dict:
    env = {**os.environ, **env_updates}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_cpu_devices():
    flags = "--xla_force_host_platform_device_count=4"
    return _run({"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})


def test_ensemble_is_sharded_over_four_devices_and_matches_one(four_cpu_devices):
    r = four_cpu_devices
    assert r["n_devices"] == 4
    assert r["ensemble_devices_used"] == 4
    assert r["ensemble_max_abs_diff"] < 1e-5
    assert r["ensemble_loss_max_abs_diff"] < 1e-3


def test_sbi_batch_sampling_sharded_over_four_devices_matches_one(four_cpu_devices):
    r = four_cpu_devices
    assert r["sbi_shape"] == [64, 256, 2]
    assert r["sbi_max_abs_diff"] < 1e-5


@pytest.mark.gpu
@pytest.mark.slow
def test_sharding_over_the_gpus_matches_one_gpu():
    r = _run({})
    assert r["ensemble_max_abs_diff"] < 1e-4
    assert r["sbi_max_abs_diff"] < 1e-4
