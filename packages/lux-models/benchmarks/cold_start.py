"""Time to a first Cannon fit in a fresh process: orrery.lux against The Cannon 2.

Users meet a cold process (a script, a notebook after a restart, a CI job, each
worker of a pipeline), so every figure here comes from a new Python process per
shape: import, then the first ``fit`` (3 labels, degree 2), compilation
included. The data (a synthetic survey at S/N 100 with intrinsic scatter
0.01, float32) are written once per shape by this parent process, so each
child times only what a user waits for. Per child it reports

- ``import``: importing the package (JAX and its dependencies included);
- ``fit``: the first fit, and of it the seconds XLA spent compiling (from
  ``jax.monitoring``'s ``backend_compile`` events);
- ``total``: from the child's first statement to the fitted model (the data
  load, about 0.1 s, included);
- ``cpu``: the child's CPU seconds (user + system) over the same span. The
  machine this was written on has two cores shared with other work, so wall
  times swing with the load (printed with the figures); CPU seconds swing less.

A last table breaks each cold total down by phase: the interpreter's start
(spawn to first statement), importing NumPy and JAX, importing orrery.lux on
top, loading the data, and the first fit's tracing, lowering and XLA
compiling (JAX's ``jax.monitoring`` durations) and the rest of it (the run and
the host work: checks, copies to the device, results back).

The Cannon 2 (PyPI ``annieslasso``, module ``thecannon``) runs in its own
isolated environment through ``uv run --isolated`` with the pins it needs (the
same as ``benchmarks/cannon.py``), timed the same way from inside its process.
When ``uv`` or the package cannot be had, its columns are left out and the
reason is printed.

    uv run python packages/lux-models/benchmarks/cold_start.py
    uv run python packages/lux-models/benchmarks/cold_start.py --shapes 300x200 2000x200
    uv run python packages/lux-models/benchmarks/cold_start.py --skip-cannon2 --cache DIR
    uv run python packages/lux-models/benchmarks/cold_start.py --shapes --lux 2000x200

``--lux [SHAPE ...]`` also times a first Lux fit (2 latents, one affine output
of the synthetic flux, ten cycles of exact least-squares blocks) per shape in a
fresh process, and a second fit in the same process (warm CPU seconds);
``--shapes`` with no shape skips the Cannon rows.

``--cache DIR`` switches on the persistent compilation cache
(`orrery.lux.enable_compilation_cache`) in every child, and runs each shape
twice, so the second child shows a process that finds its programs compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import thread_env

SHAPES = ("2000x200", "2000x100", "5000x200", "300x200", "2000x1000", "2000x8575")
CANNON2_PINS = ["annieslasso", "numpy<2", "astropy<6.1", "scipy<1.14"]

# Timed from the first statement: the JAX workers start their clocks before any import
# and add up XLA's compile durations.
_JAX_PREAMBLE = r"""
import time
t0, c0, e0 = time.perf_counter(), time.process_time(), time.time()
import json, sys
import jax
import jax.monitoring

compile_s = [0.0]
phases = {"trace": 0.0, "lower": 0.0}
_PHASE = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lower"}

def _listen(name, seconds, **kwargs):
    if name.endswith("backend_compile_duration"):
        compile_s[0] += seconds
    phase = _PHASE.get(name.rsplit("/", 1)[-1])
    if phase:
        phases[phase] += seconds

jax.monitoring.register_event_duration_secs_listener(_listen)
t_jax, c_jax = time.perf_counter() - t0, time.process_time() - c0
"""

_ORRERY_WORKER = (
    _JAX_PREAMBLE
    + r"""
cache = sys.argv[3]
import orrery.lux
from orrery.lux import Cannon
if cache:
    orrery.lux.enable_compilation_cache(cache)
import numpy as np
t_import, c_import = time.perf_counter() - t0, time.process_time() - c0
d = np.load(sys.argv[1])
labels, flux, ivar = d["labels"], d["flux"], d["ivar"]
t1, c1 = time.perf_counter(), time.process_time()
cannon = Cannon(labels.shape[1], flux.shape[1]).fit(labels, flux, ivar)
jax.block_until_ready(cannon.coeffs)
t_end, c_end = time.perf_counter(), time.process_time()
json.dump({"import": t_import, "fit": t_end - t1, "total": t_end - t0,
           "cpu": c_end - c0, "compile": compile_s[0], **phases,
           "wall_jax": t_jax, "cpu_jax": c_jax, "cpu_import": c_import,
           "wall_data": t1 - t0 - t_import, "cpu_data": c1 - c0 - c_import,
           "cpu_fit": c_end - c1, "started": e0, "cpu_start": c0}, open(sys.argv[2], "w"))
"""
)

# A Lux fit (2 latents, one affine output, exact least-squares blocks): the first
# `optimize_iterative` in a fresh process, then a second one in the same process (warm).
_LUX_WORKER = (
    _JAX_PREAMBLE
    + r"""
import numpy as np
from orrery.lux import AffineTransform, Lux, LuxData, OutputData, optimize_iterative
t_import = time.perf_counter() - t0
d = np.load(sys.argv[1])
flux = d["flux"]

def fit():
    model = Lux(2)
    model.register_output("flux", AffineTransform(flux.shape[1]))
    data = LuxData(flux=OutputData(flux, err=0.01))
    res = optimize_iterative(model, data, max_cycles=10, progress=False)
    jax.block_until_ready(res.params)

t1 = time.perf_counter()
fit()
t_end, cpu = time.perf_counter(), time.process_time() - c0
c2 = time.process_time()
fit()
warm_cpu = time.process_time() - c2
json.dump({"import": t_import, "fit": t_end - t1, "total": t_end - t0, "cpu": cpu,
           "compile": compile_s[0], "warm_cpu": warm_cpu}, open(sys.argv[2], "w"))
"""
)

_CANNON2_WORKER = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import json, sys
import numpy as np
import thecannon as tc
t_import = time.perf_counter() - t0
d = np.load(sys.argv[1])
labels, flux, ivar = d["labels"], d["flux"], d["ivar"]
t1 = time.perf_counter()
vec = tc.vectorizer.PolynomialVectorizer(("teff", "logg", "feh"), 2)
model = tc.CannonModel(labels, flux, ivar, vectorizer=vec)
model.train()
t_end = time.perf_counter()
json.dump({"import": t_import, "fit": t_end - t1, "total": t_end - t0,
           "cpu": time.process_time() - c0, "compile": 0.0}, open(sys.argv[2], "w"))
"""


def _write_data(shape: str, seed: int, path: Path) -> None:
    import numpy as np

    from orrery.lux.datasets import synthetic_survey

    n, p = (int(v) for v in shape.split("x"))
    s = synthetic_survey(n, p, snr=100, intrinsic_scatter=0.01, seed=seed)
    np.savez(
        path,
        labels=s.labels,
        flux=s.spectra.astype(np.float32),
        ivar=s.ivar.astype(np.float32),
    )


def _run(cmd: list[str], out: Path, env, cwd) -> dict | str:
    spawned = time.time()
    try:
        subprocess.run(cmd, check=True, env=env, cwd=cwd, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        tail = (getattr(err, "stderr", "") or "")[-1500:]
        return f"{err}\n{tail}"
    r = json.loads(out.read_text())
    if "started" in r:  # from the spawn to the child's first statement (interpreter start)
        r["wall_start"] = r["started"] - spawned
    return r


def _orrery(data: Path, tmp: Path, env, cache: str) -> dict | str:
    worker, out = tmp / "orrery_worker.py", tmp / "orrery.json"
    worker.write_text(_ORRERY_WORKER)
    return _run([sys.executable, str(worker), str(data), str(out), cache], out, env, tmp)


def _lux(data: Path, tmp: Path, env) -> dict | str:
    worker, out = tmp / "lux_worker.py", tmp / "lux.json"
    worker.write_text(_LUX_WORKER)
    return _run([sys.executable, str(worker), str(data), str(out)], out, env, tmp)


def _lux_rows(shapes: list[str], seed: int, env) -> None:
    """A first Lux fit per shape (stars x outputs) in a fresh process, and a warm one."""
    print("\nLux (2 latents, affine output, 10 cycles of exact blocks); seconds")
    print(
        f"{'stars x outputs':<22}{'import':>8}{'fit':>8}{'compile':>9}{'total':>8}{'cpu':>8}"
        f"{'warm cpu':>10}{'load':>7}"
    )
    for shape in shapes:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            _write_data(shape, seed, tmp / "data.npz")
            r = _lux(tmp / "data.npz", tmp, env)
            if isinstance(r, str):
                print(f"{shape:<22}failed: {r}")
                continue
            print(f"{_row(shape, r)}{r['warm_cpu']:>10.2f}{os.getloadavg()[0]:>7.2f}")


def _cannon2(data: Path, tmp: Path, env, uv: str) -> dict | str:
    worker, out = tmp / "cannon2_worker.py", tmp / "cannon2.json"
    worker.write_text(_CANNON2_WORKER)
    with_ = [a for pin in CANNON2_PINS for a in ("--with", pin)]
    cmd = [uv, "run", "--isolated", "--no-project", *with_, "python", str(worker)]
    return _run([*cmd, str(data), str(out)], out, env, tmp)


def _phases(shape: str, r: dict) -> str:
    """One row of the breakdown: wall (CPU) seconds per phase of a cold Cannon fit."""
    jax_w, jax_c = r["wall_jax"], r["cpu_jax"]
    lux_w, lux_c = r["import"] - jax_w, r["cpu_import"] - jax_c
    rest = r["fit"] - r["trace"] - r["lower"] - r["compile"]
    cells = [
        f"{r.get('wall_start', float('nan')):.2f} ({r['cpu_start']:.2f})",
        f"{jax_w:.2f} ({jax_c:.2f})",
        f"{lux_w:.2f} ({lux_c:.2f})",
        f"{r['wall_data']:.2f} ({r['cpu_data']:.2f})",
        f"{r['trace']:.2f}",
        f"{r['lower']:.2f}",
        f"{r['compile']:.2f}",
        f"{rest:.2f}",
        f"{r['fit']:.2f} ({r['cpu_fit']:.2f})",
    ]
    return f"{shape:<12}" + "".join(f"{c:>14}" for c in cells)


def _row(name: str, r: dict) -> str:
    return (
        f"{name:<22}{r['import']:>8.2f}{r['fit']:>8.2f}{r['compile']:>9.2f}"
        f"{r['total']:>8.2f}{r['cpu']:>8.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), help="stars x pixels")
    ap.add_argument("--threads", type=int, default=2, help="threads per process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-cannon2", action="store_true")
    ap.add_argument("--uv", default=shutil.which("uv"), help="the uv executable")
    ap.add_argument("--cache", default="", help="persistent compilation cache folder")
    ap.add_argument(
        "--lux",
        nargs="*",
        default=None,
        metavar="SHAPE",
        help="also time a first Lux fit at these stars x outputs (default 2000x200)",
    )
    args = ap.parse_args()
    env = thread_env(args.threads)
    if args.lux is not None:
        _lux_rows(args.lux or ["2000x200"], args.seed, env)
        if not args.shapes:
            return
    print(
        f"Cold start (fresh process: import + first Cannon.fit, 3 labels, degree 2, float32); "
        f"{args.threads} threads per process; load average before: {os.getloadavg()[0]:.2f}"
    )
    skip = "skipped (--skip-cannon2)" if args.skip_cannon2 else None
    if skip is None and not args.uv:
        skip = "uv not found (pass --uv)"
    if skip:
        print(f"The Cannon 2: {skip}; its rows are left out")
    head = f"{'':<22}{'import':>8}{'fit':>8}{'compile':>9}{'total':>8}{'cpu':>8}"
    summary = []
    for shape in args.shapes:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            data = tmp / "data.npz"
            _write_data(shape, args.seed, data)
            print(f"\n{shape} (stars x pixels); seconds\n{head}")
            runs = 2 if args.cache else 1
            ours = None
            for run in range(runs):
                r = _orrery(data, tmp, env, args.cache)
                if isinstance(r, str):
                    print(f"orrery.lux failed: {r}")
                    break
                name = "orrery.lux" + (" (cache warm)" if run else "")
                print(_row(name, r))
                ours = r if ours is None else ours
            theirs = None
            if skip is None:
                theirs = _cannon2(data, tmp, env, args.uv)
                if isinstance(theirs, str):
                    print(f"The Cannon 2 could not be run: {theirs}")
                    skip, theirs = "could not be run", None
                else:
                    print(_row("The Cannon 2", theirs))
            load = os.getloadavg()[0]
            print(f"load average: {load:.2f}")
            summary.append((shape, ours, theirs, load))
    cols = f"{'orrery wall / cpu':>19}{'The Cannon 2':>19}{'ratio':>8}{'cpu ratio':>11}{'load':>7}"
    print(f"\n{'stars x pixels':<16}{cols}")
    for shape, ours, theirs, load in summary:
        o = f"{ours['total']:>10.2f} / {ours['cpu']:>5.2f}" if ours else f"{'-':>19}"
        t = f"{theirs['total']:>10.2f} / {theirs['cpu']:>5.2f}" if theirs else f"{'-':>19}"
        both = ours and theirs
        ratio = f"{ours['total'] / theirs['total']:>8.2f}" if both else f"{'-':>8}"
        cpu = f"{ours['cpu'] / theirs['cpu']:>11.2f}" if both else f"{'-':>11}"
        print(f"{shape:<16}{o}{t}{ratio}{cpu}{load:>7.2f}")
    names = ("python", "numpy+jax", "orrery.lux", "data", "trace", "lower", "compile", "run+host")
    print("\nWhere a cold total goes: wall seconds (CPU seconds) per phase; trace, lower and")
    print("compile are JAX's event durations (wall), run+host the rest of the first fit")
    print(f"{'':<12}" + "".join(f"{n:>14}" for n in (*names, "fit")))
    for shape, ours, _, _ in summary:
        if ours:
            print(_phases(shape, ours))


if __name__ == "__main__":
    main()
