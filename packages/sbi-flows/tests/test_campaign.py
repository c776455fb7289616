"""Simulation campaigns: engines give identical stores, resume after kill -9, failures."""

import concurrent.futures as cf
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from orrery.interface import ArtifactError, ConfigError
from orrery.sbi import SimulationDataset, simulate
from orrery.sbi._store.read import ChunkReader
from orrery.sbi._store.write import finished_chunks, read_config

pytest.importorskip("zarr")

BOX = [[0.0, 1.0], [-1.0, 1.0]]


def toy_simulator(theta):
    return {
        "spectrum": np.sin(3 * theta[:, :1] + np.linspace(0, 1, 5)) + theta[:, 1:],
        "photometry": theta**2,
    }


def flaky_simulator(theta):
    if np.any(theta[:, 0] > 0.9):
        raise RuntimeError(f"solver diverged at {theta[:, 0].max():.3f}")
    out = toy_simulator(theta)
    out["spectrum"] = np.where(theta[:, 1:] < -0.8, np.nan, out["spectrum"])
    return out


def store_contents(path):
    cfg = read_config(Path(path))
    reader = ChunkReader(Path(path))
    arrays = {}
    for i in range(cfg["n_chunks"]):
        for name in ["parameters", "ok", "obs/spectrum", "obs/photometry"]:
            arrays[(i, name)] = reader.array(i, name)
    return cfg, arrays


def assert_same_store(a, b):
    cfg_a, arr_a = store_contents(a)
    cfg_b, arr_b = store_contents(b)
    assert cfg_a["fingerprint"] == cfg_b["fingerprint"]
    assert arr_a.keys() == arr_b.keys()
    for key, value in arr_a.items():
        np.testing.assert_array_equal(value, arr_b[key], err_msg=str(key))


def test_process_pool_and_dask_give_bit_identical_stores(tmp_path):
    distributed = pytest.importorskip("distributed")
    kwargs = dict(chunk_size=16, seed=3, modalities={"spectrum": "spectrum"})
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        a = simulate(toy_simulator, BOX, 100, tmp_path / "pool", executor=pool, **kwargs)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        b = simulate(
            toy_simulator, BOX, 100, tmp_path / "dask", executor=client.get_executor(), **kwargs
        )
    assert_same_store(a, b)
    cfg = read_config(Path(a))
    assert cfg["n_chunks"] == 7 and cfg["n_failed"] == 0
    assert cfg["blocks"] == {
        "spectrum": {"size": 5, "dtype": "float64"},
        "photometry": {"size": 2, "dtype": "float64"},
    }
    ds = SimulationDataset.from_store(a)
    assert ds.modalities == {"spectrum": "spectrum", "photometry": "photometry"}
    assert ds.parameter_bounds.tolist() == BOX and ds.bounds_source == "given"


def test_failures_are_recorded_and_excluded(tmp_path):
    path = simulate(
        flaky_simulator, BOX, 60, tmp_path / "s", chunk_size=10, executor=cf.ThreadPoolExecutor(2)
    )
    cfg = read_config(Path(path))
    reader = ChunkReader(Path(path))
    failures = [f for i in range(cfg["n_chunks"]) for f in reader.attrs(i)["failures"]]
    theta = np.concatenate([reader.array(i, "parameters") for i in range(cfg["n_chunks"])])
    raised = theta[:, 0] > 0.9
    nonfinite = (theta[:, 1] < -0.8) & ~raised
    assert raised.any() and nonfinite.any()
    assert cfg["n_failed"] == len(failures) == int(raised.sum() + nonfinite.sum())
    for f in failures:
        row = f["row"]
        assert f["parameters"] == theta[row].tolist()
        if raised[row]:
            assert "RuntimeError: solver diverged" in f["error"]
        else:
            assert f["error"] == "non-finite values in block 'spectrum'"
    ds = SimulationDataset.from_store(path, validation_fraction=0.2)
    assert ds.manifest["excluded_failed"] == cfg["n_failed"]
    assert ds.n_simulations == 60 - cfg["n_failed"]
    ok = ~(raised | nonfinite)
    mem = SimulationDataset.from_arrays(
        theta[ok], toy_simulator(theta[ok]), bounds=BOX, validation_fraction=0.2
    )
    assert ds.fingerprint == mem.fingerprint


def test_store_refuses_other_arguments_and_unfinished(tmp_path):
    path = simulate(toy_simulator, BOX, 20, tmp_path / "s", executor=cf.ThreadPoolExecutor(1))
    with pytest.raises(ConfigError, match="seed=0"):
        simulate(toy_simulator, BOX, 20, path, seed=1, executor=cf.ThreadPoolExecutor(1))
    with pytest.raises(ArtifactError, match="not a simulation store"):
        SimulationDataset.from_store(tmp_path)


_KILLED_DRIVER = """
import sys, time
import numpy as np
import concurrent.futures as cf
from orrery.sbi import simulate

def slow(theta):
    time.sleep(0.05)
    return {
        "spectrum": np.sin(3 * theta[:, :1] + np.linspace(0, 1, 5)) + theta[:, 1:],
        "photometry": theta**2,
    }

simulate(slow, [[0.0, 1.0], [-1.0, 1.0]], 400, sys.argv[1], chunk_size=5,
         executor=cf.ThreadPoolExecutor(1))
"""


def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path):
    store = tmp_path / "killed"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_KILLED_DRIVER))
    proc = subprocess.Popen([sys.executable, str(script), str(store)])
    try:
        deadline = time.monotonic() + 120
        while len(finished_chunks(store)) < 3:
            assert proc.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = finished_chunks(store)
    assert 3 <= len(done) < 80
    assert not read_config(store).get("complete")
    with pytest.raises(ArtifactError, match="not complete"):
        SimulationDataset.from_store(store)
    calls = []

    def counting(theta):
        calls.append(theta.shape[0])
        return toy_simulator(theta)

    simulate(counting, BOX, 400, store, chunk_size=5, executor=cf.ThreadPoolExecutor(2))
    assert len(calls) == 80 - len(done)  # only the missing chunks ran
    fresh = simulate(
        toy_simulator, BOX, 400, tmp_path / "fresh", chunk_size=5, executor=cf.ThreadPoolExecutor(2)
    )
    assert_same_store(store, fresh)


_SIM_MODULE = """
import os
import numpy as np

def sim(theta):
    open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w").close()
    return {
        "spectrum": np.sin(3 * theta[:, :1] + np.linspace(0, 1, 5)) + theta[:, 1:],
        "photometry": theta**2,
    }
"""

_DEFAULT_DRIVER = """
import os, sys
from orrery.sbi import simulate
import simmod

if __name__ == "__main__":  # the default pool spawns workers that import this file
    print(os.getpid())
    simulate(simmod.sim, [[0.0, 1.0], [-1.0, 1.0]], 40, sys.argv[1], chunk_size=20, seed=4)
"""


def test_default_executor_is_a_spawned_process_pool_equal_to_threads(tmp_path):
    (tmp_path / "simmod.py").write_text(textwrap.dedent(_SIM_MODULE))
    (tmp_path / "driver.py").write_text(textwrap.dedent(_DEFAULT_DRIVER))
    pids = tmp_path / "pids"
    pids.mkdir()
    out = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "default")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "PID_DIR": str(pids)},
    )
    driver = out.stdout.split()[0]
    workers = {p.name for p in pids.iterdir()}
    assert workers and driver not in workers  # chunks ran in other processes
    threads = simulate(
        toy_simulator,
        BOX,
        40,
        tmp_path / "threads",
        chunk_size=20,
        seed=4,
        executor=cf.ThreadPoolExecutor(2),
    )
    assert_same_store(tmp_path / "default", threads)
