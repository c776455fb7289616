"""Every sharded path across 2 processes x 2 CPU devices (one JAX cluster on 127.0.0.1).

One pair of processes (one cluster start) runs every scenario in
``_mp_worker.py``: ``jax.distributed.initialize`` with gloo CPU collectives, then
``EnsembleMAP``/``EnsembleVI``/``ensemble_predict`` (``devices="all"``), a
data-parallel ``ConditionalFlowPosterior.fit`` from memory (and a resume from
process 0's checkpoint), the same fit from a campaign store both processes open
(each reading only its half of every batch) and
``batch_sample_posterior(devices="all")``, each compared in-process with the same
call on one local device.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("_mp_worker.py")
TIMEOUT_S = 420

# float32 results of the same arithmetic; only the order of reductions differs
# between 1 and 4 devices (per-device partial sums then an all-reduce), a few
# ulps per step compounded over tens of steps.
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), "2", port, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for proc in procs:  # one failed or hung: the other would wait forever
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-4000:]
    results = [json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2)]
    for i, res in enumerate(results):
        assert res["process_index"] == i
        assert (res["device_count"], res["local_device_count"]) == (4, 2)
        checked = set(res["diffs"])
        assert {"ensemble_map.params", "ensemble_vi.params", "ensemble_predict"} <= checked
        assert {"sbi_fit.params", "sbi_resume.params", "batch_sample_posterior"} <= checked
        assert {"sbi_store.params", "sbi_store.history"} <= checked
        # process i read only columns [16 i, 16 i + 16) of every 32-row batch
        assert res["store_parts"] == [[i, 2, 16]], res["store_parts"]
        # as docs/scaling.md says: SBI results are gathered to every process; the
        # ensemble runners hand back global arrays whose members live where computed
        local = set(res["process_local"])
        assert not any(name.startswith(("sbi_", "batch_")) for name in local), local
        assert local == {
            "ensemble_map.params",
            "ensemble_map.losses",
            "ensemble_map.skipped_steps",
            "ensemble_predict",
            "ensemble_vi.params",
            "ensemble_vi.losses",
        }, local
        for name, diff in res["diffs"].items():
            assert diff < TOLERANCE, (i, name, diff, res["seconds"])
