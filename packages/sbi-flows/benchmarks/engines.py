"""The same campaign code on other engines: Ray and MPI against a process pool.

``simulate`` takes any ``concurrent.futures.Executor``. This script runs one small
campaign (a NumPy simulator, 12 chunks) with a 2-worker spawned
``ProcessPoolExecutor`` in the workspace environment, then the same call with
each engine's executor, each in its own fresh virtual environment holding
``orrery-interface``, ``sbi-flows[store]`` and the engine, and compares the stores'
fingerprints (they cover every chunk's data: equal fingerprints mean
bit-identical stores).

- Ray: Ray has no ``concurrent.futures.Executor`` of its own (``ray.util`` offers
  a multiprocessing ``Pool``), but every task's ``ObjectRef.future()`` is a
  ``concurrent.futures.Future``: `RayExecutor` below is the four-line adapter,
  with Ray scheduling the tasks. ``ray.init(num_cpus=2)`` starts a local cluster.
- MPI: ``mpi4py.futures.MPIPoolExecutor`` under
  ``mpiexec -n 3 python -m mpi4py.futures engines.py ...`` (rank 0 drives, two
  ranks work), with the MPICH library from the ``mpich`` wheel.

    uv run python packages/sbi-flows/benchmarks/engines.py [--engines ray mpi]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PACKAGES = HERE.parent.parent
ENGINES = {"ray": ["ray>=2.40"], "mpi": ["mpi4py>=4", "mpich"]}
CAMPAIGN = dict(num_simulations=240, chunk_size=20, seed=11)
BOX = [[0.0, 1.0], [-1.0, 1.0]]


def simulator(theta: np.ndarray) -> dict[str, np.ndarray]:
    """A cheap deterministic NumPy simulator (1 ms per simulation)."""
    time.sleep(0.001 * theta.shape[0])
    grid = np.linspace(0.0, 1.0, 16)
    return {"auxiliary": np.sin(5 * grid * theta[:, :1]) + theta[:, 1:] * grid}


class RayExecutor(cf.Executor):
    """``submit`` as a Ray task; its ``ObjectRef.future()`` is the returned Future."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        import ray

        return ray.remote(fn).remote(*args, **kwargs).future()


def campaign(engine: str, store: str) -> dict:
    """Run the campaign on ``engine`` (in this process's environment)."""
    from engines import simulator as sim  # by module name: importable in every worker

    from orrery.sbi import simulate
    from orrery.sbi._store.write import read_config

    t0 = time.perf_counter()
    version = f"python {sys.version.split()[0]}"
    if engine == "pool":
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
            simulate(sim, BOX, store=store, executor=pool, **CAMPAIGN)
    elif engine == "ray":
        import ray

        version = f"ray {ray.__version__}"
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20)
        try:
            simulate(sim, BOX, store=store, executor=RayExecutor(), **CAMPAIGN)
        finally:
            ray.shutdown()
    elif engine == "mpi":
        import mpi4py
        from mpi4py import MPI
        from mpi4py.futures import MPIPoolExecutor

        library = " ".join(MPI.Get_library_version().split()[:3])
        version = f"mpi4py {mpi4py.__version__}, {library}"

        with MPIPoolExecutor() as pool:
            simulate(sim, BOX, store=store, executor=pool, **CAMPAIGN)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    cfg = read_config(Path(store))
    return {
        "engine": engine,
        "version": version,
        "fingerprint": cfg["fingerprint"],
        "n_chunks": cfg["n_chunks"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def make_env(engine: str, root: Path) -> Path:
    """A fresh virtual environment with orrery-interface, sbi-flows[store] and the engine."""
    env = root / f"env-{engine}"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run(
        [
            "uv", "pip", "install", "-q", "--python", str(python),
            str(PACKAGES / "orrery-interface"), f"{PACKAGES / 'sbi-flows'}[store]",
            *ENGINES[engine],
        ],
        check=True,
    )  # fmt: skip
    return env


def run_elsewhere(engine: str, env: Path, store: Path) -> dict:
    python = env / "bin" / "python"
    cmd = [str(python), str(HERE / "engines.py"), "--run", engine, str(store)]
    if engine == "mpi":
        cmd = [str(env / "bin" / "mpiexec"), "-n", "3", str(python), "-m", "mpi4py.futures"]
        cmd += [str(HERE / "engines.py"), "--run", "mpi", str(store)]
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UV_")},
        # Ray would otherwise re-run the workers with this script's "uv run" command
        # in the workspace (it detects being started by uv); workers use the env's python
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "PYTHONPATH": str(HERE),
        "JAX_PLATFORMS": "cpu",
        # the engine's helper processes run "python" from PATH: this environment's
        "PATH": os.pathsep.join([str(env / "bin"), os.environ.get("PATH", "")]),
        "VIRTUAL_ENV": str(env),
    }
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env=environ, cwd=store.parent
    )
    if out.returncode:
        tail = (out.stdout + out.stderr).strip().splitlines()[-15:]
        return {"engine": engine, "error": "\n".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--run", nargs=2, metavar=("ENGINE", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:  # inside an engine's environment
        print(json.dumps(campaign(*args.run)))
        return
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = campaign("pool", str(root / "pool"))
        print(f"process pool (2 spawned workers): {reference}")
        for engine in args.engines:
            t0 = time.perf_counter()
            env = make_env(engine, root)
            print(f"{engine}: environment ready in {time.perf_counter() - t0:.0f} s")
            result = run_elsewhere(engine, env, root / engine)
            if "error" in result:
                print(f"{engine}: FAILED\n{result['error']}")
                continue
            same = result["fingerprint"] == reference["fingerprint"]
            verdict = "bit-identical store" if same else "DIFFERENT store"
            print(f"{engine}: {result} -> {verdict}")


if __name__ == "__main__":
    main()
