"""Time to a first recipe fit in a fresh process: orrery.sbi against `sbi` 0.27.

Users meet a cold process (a script, a notebook after a restart, a CI job, each
worker of a campaign), so the first figures come from a new Python process:
import, then the first ``ConditionalFlowPosterior.recommended(...)`` fit,
compilation included; the same process then fits a second, fresh posterior of
the same configuration (``warm``: its programs are in the trainer's cache). The
simulations (``gaussian_linear`` from ``_tasks.py``, 10-D) are written once by
this parent process, so the child times only what a user waits for:

- ``import``: importing the package (JAX and its dependencies included);
- ``fit``: the first fit, and of it the seconds XLA spent compiling (from
  ``jax.monitoring``'s ``backend_compile`` events) and the seconds the trainer
  reports for its compile stage (``compile_time_s``);
- ``total``: from the child's first statement to the fitted posterior;
- ``cpu``: the child's CPU seconds over the same span (the machine is shared;
  wall times swing with the load, printed with the figures);
- ``warm fit``: the second fit in the same process;
- ``--cache``: two more fresh processes with ``orrery.sbi.enable_compilation_cache``
  on one new folder: the first fills it, the second reads its programs back;
- ``--programs``: one more fresh process that lowers the fit's three large programs
  (build, epoch, validation) as the trainer would and compiles each once with the
  package's compiler options, timing the compile's CPU seconds (``process_time``)
  and counting the fused kernels in the optimised HLO.

To time another checkout against this one, put its ``src`` first on the child's
path: ``PYTHONPATH=/old/checkout/packages/sbi-flows/src python cold_start.py`` (the
module the child imported is printed).

``sbi`` 0.27 (NPE, its defaults) runs in its isolated environment exactly as
``general_purpose.py`` runs it (``_tasks.run_sbi``); its ``total`` is the wall
time of that fresh process (``uv run --isolated`` resolving a cached
environment, importing torch, training, and drawing ``--num-samples`` draws),
its ``fit`` the training time it reports. It needs ``uv`` on ``PATH`` (without it
its line says why); ``--skip-sbi`` leaves it out.

    uv run python packages/sbi-flows/benchmarks/cold_start.py            # 10^4 sims, 10 epochs
    uv run python packages/sbi-flows/benchmarks/cold_start.py --epochs 0 # the recipe's epochs
    uv run python packages/sbi-flows/benchmarks/cold_start.py --skip-sbi --num-simulations 2000
    uv run python packages/sbi-flows/benchmarks/cold_start.py --skip-sbi --cache
    uv run python packages/sbi-flows/benchmarks/cold_start.py --skip-sbi --programs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tasks import run_sbi, task_data

TASK = "gaussian_linear"

# Timed from the first statement: the clock starts before any import.
_WORKER = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import json, sys
import jax
import jax.monitoring

compile_s = [0.0]
programs = []

def _listen(name, seconds, **kwargs):
    if name.endswith("backend_compile_duration"):
        compile_s[0] += seconds
        programs.append(seconds)

jax.monitoring.register_event_duration_secs_listener(_listen)
import orrery.sbi
from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
import numpy as np
t_import = time.perf_counter() - t0
if len(sys.argv) > 3:
    orrery.sbi.enable_compilation_cache(sys.argv[3])
d = np.load(sys.argv[1])
theta, x, epochs = d["theta"], d["x"], int(d["epochs"])
overrides = {"seed": 0} if epochs <= 0 else {"seed": 0, "num_epochs": epochs}

def fit():
    data = SimulationDataset.from_arrays(theta, x, seed=0)
    post = ConditionalFlowPosterior.recommended(theta.shape[1], len(theta), **overrides)
    art = post.fit(data)
    jax.block_until_ready(jax.tree.leaves(post.model))
    return art.trainer_metadata

t1 = time.perf_counter()
meta = fit()
t_end = time.perf_counter()
cold = {"import": t_import, "fit": t_end - t1, "total": t_end - t0,
        "cpu": time.process_time() - c0, "compile": compile_s[0],
        "trainer_compile": meta["compile_time_s"], "epochs": meta["epochs_run"],
        "programs": len(programs), "largest": sorted(programs, reverse=True)[:3],
        "module": orrery.sbi.__file__}
compile_s[0] = 0.0
t2 = time.perf_counter()
meta = fit()
cold["warm_fit"] = time.perf_counter() - t2
cold["warm_compile"] = compile_s[0]
json.dump(cold, open(sys.argv[2], "w"))
"""

# Lowers the build, epoch and validation programs of the same fit and compiles each.
_PROGRAMS_WORKER = r"""
import json, re, sys, time
import equinox as eqx
import jax
import numpy as np
import orrery.sbi.posterior as posterior_module
from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
from orrery.sbi._xla import compiler_options
from orrery.sbi._posterior import build as build_module
from orrery.sbi.training import _programs
from orrery.sbi.training import trainer as trainer_module

class Lowered(Exception):
    pass

d = np.load(sys.argv[1])
theta, x, epochs = d["theta"], d["x"], int(d["epochs"])
overrides = {"seed": 0} if epochs <= 0 else {"seed": 0, "num_epochs": epochs}
data = SimulationDataset.from_arrays(theta, x, seed=0)
post = ConditionalFlowPosterior.recommended(theta.shape[1], len(theta), **overrides)
lowered = {}
real_build = posterior_module.compiled_build

def spy_build(make, key, cache_key):
    lowered["build"] = (eqx.filter_jit(make).lower(key).lowered, build_module._COMPILER_OPTIONS)
    return real_build(make, key, cache_key)

def spy_compiled(key, epoch_fn, args):
    lowered["epoch"] = (epoch_fn.lower(*args), {})
    params, _, train, _, consts = args
    step_key = jax.random.key(0)
    full_chunks, chunk = [f for k, f in _programs.JIT_CACHE.items() if k[0] == "eval"][-1]
    n_val = len(theta) - len(jax.tree.leaves(train)[0])
    size = max(post.batch_size, _programs.EVAL_CHUNK)
    if n_val >= size:
        head = jax.tree.map(lambda a: a[:size], train)
        lowered["validation"] = (full_chunks.lower(params, head, step_key, consts), {})
    if n_val % size:
        tail = jax.tree.map(lambda a: a[: n_val % size], train)
        lowered["validation, rest"] = (chunk.lower(params, tail, step_key, consts), {})
    raise Lowered

posterior_module.compiled_build = spy_build
trainer_module._compiled = spy_compiled
try:
    post.fit(data)
except Lowered:
    pass
out = {}
for name, (low, extra) in lowered.items():
    c0 = time.process_time()
    compiled = low.compile(compiler_options={**compiler_options(), **extra})
    cpu = time.process_time() - c0
    hlo = compiled.as_text() or ""
    ops = sum(1 for line in low.as_text().splitlines() if " = " in line)
    out[name] = {"cpu": cpu, "kernels": len(re.findall(r" = [^=]*fusion\(", hlo)), "ops": ops}
json.dump(out, open(sys.argv[2], "w"))
"""


def run_programs(theta, x, epochs: int, tmp: Path) -> dict:
    data, out, worker = tmp / "data.npz", tmp / "programs.json", tmp / "programs.py"
    np.savez(data, theta=theta.astype(np.float32), x=x.astype(np.float32), epochs=epochs)
    worker.write_text(_PROGRAMS_WORKER)
    proc = subprocess.run(
        [sys.executable, str(worker), str(data), str(out)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(out.read_text())


def run_orrery(theta, x, epochs: int, tmp: Path, cache: Path | None = None) -> dict:
    data, out, worker = tmp / "data.npz", tmp / "orrery.json", tmp / "worker.py"
    np.savez(data, theta=theta.astype(np.float32), x=x.astype(np.float32), epochs=epochs)
    worker.write_text(_WORKER)
    command = [sys.executable, str(worker), str(data), str(out)]
    proc = subprocess.run(command + ([str(cache)] if cache else []), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(out.read_text())


def run_sbi_cold(theta, x, x_obs, num_samples: int, tmp: Path) -> dict:
    start = time.perf_counter()
    _, train_s, epochs = run_sbi(TASK, theta, x, x_obs, num_samples, 0, tmp)
    return {"total": time.perf_counter() - start, "fit": train_s, "epochs": epochs}


def _report(label: str, ours: dict) -> None:
    largest = ", ".join(f"{t:.1f}" for t in ours["largest"])
    print(
        f"{label}: import {ours['import']:.1f} s, first fit {ours['fit']:.1f} s "
        f"({ours['epochs']} epochs; XLA compiling {ours['compile']:.1f} s in "
        f"{ours['programs']} programs, largest {largest} s; trainer's compile stage "
        f"{ours['trainer_compile']:.1f} s), total {ours['total']:.1f} s, cpu {ours['cpu']:.1f} s; "
        f"warm second fit {ours['warm_fit']:.1f} s (compiling {ours['warm_compile']:.1f} s) "
        f"(load {os.getloadavg()[0]:.1f})"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10, help="cap the recipe's; 0: its own")
    parser.add_argument("--num-samples", type=int, default=100, help="sbi's draws (1 obs)")
    parser.add_argument("--skip-sbi", action="store_true")
    parser.add_argument(
        "--cache",
        action="store_true",
        help="two more fresh processes with enable_compilation_cache (empty, then filled)",
    )
    parser.add_argument(
        "--programs",
        action="store_true",
        help="one more fresh process: compile CPU seconds and kernels of each large program",
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    theta, x, x_obs, _ = task_data(
        TASK, seed=0, num_simulations=args.num_simulations, num_observations=1, num_samples=10
    )
    print(f"{TASK}, {args.num_simulations} simulations; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_orrery(theta, x, args.epochs, Path(tmp))
        print(f"({ours['module']})")
        _report("orrery.sbi cold", ours)
        if args.cache:
            for label in ("empty persistent cache", "filled persistent cache"):
                _report(
                    f"orrery.sbi, {label}",
                    run_orrery(theta, x, args.epochs, Path(tmp), Path(tmp) / "jax-cache"),
                )
        if args.programs:
            for name, row in run_programs(theta, x, args.epochs, Path(tmp)).items():
                print(
                    f"  {name}: compile {row['cpu']:.2f} CPU s, {row['kernels']} fused "
                    f"kernels, {row['ops']} StableHLO ops (load {os.getloadavg()[0]:.1f})"
                )
        if not args.skip_sbi:
            try:
                theirs = run_sbi_cold(theta, x, x_obs, args.num_samples, Path(tmp))
            except (OSError, RuntimeError) as err:
                print(f"sbi 0.27 left out: {err}")
            else:
                print(
                    f"sbi 0.27 cold: fresh process {theirs['total']:.1f} s, of which training "
                    f"{theirs['fit']:.1f} s ({theirs['epochs']} epochs) "
                    f"(load {os.getloadavg()[0]:.1f})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
