"""The Cannon: orrery.lux against The Cannon 2 itself and the normal-equation floor.

One synthetic survey (default 2,000 training + 200 test stars × 8,575 pixels × 3
labels, quadratic, S/N 100, intrinsic scatter 0.01) is fitted by

- The Cannon 2 (PyPI ``annieslasso``, module ``thecannon``), run in an isolated
  environment with the pins it needs::

      uv run --isolated --no-project --with annieslasso --with 'numpy<2' \\
          --with 'astropy<6.1' --with 'scipy<1.14' python <worker>

- ``orrery.lux.Cannon`` in float32 (this process) and under ``jax_enable_x64``
  (a child process, since x64 is process-wide), cold (first fit, compilation
  included) and warm (median of the repeats), given the data in its working
  dtype (as the floor is);
- the floor: one weighted normal-equation solve for all pixels in NumPy
  (``Wᵀ(F⊗F)``, ``(W∘y)ᵀF`` and a batched solve), float32 and float64.

Every process gets the same thread count (``--threads``, default 2) through
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=... intra_op_parallelism_threads=N``,
set before NumPy or JAX is imported. The machine's load average is printed with
the figures. The ratio to the floor is given from the medians and from the
fastest repeat of each: this machine has slow spells (everything about 2.5×
slower for tens of seconds), which a median over a few repeats may catch on
one side only.

    uv run python packages/lux-models/benchmarks/cannon.py            # full size
    uv run python packages/lux-models/benchmarks/cannon.py --quick    # 500 × 1000
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

from _common import thread_env

THANNON_PINS = ["annieslasso", "numpy<2", "astropy<6.1", "scipy<1.14"]

_CANNON2_WORKER = r"""
import json, sys, time
import numpy as np
import thecannon as tc

d = np.load(sys.argv[1])
repeats = int(sys.argv[3])
vec = tc.vectorizer.PolynomialVectorizer(("teff", "logg", "feh"), 2)
times = []
for _ in range(repeats):
    model = tc.CannonModel(d["labels"], d["flux"], d["ivar"], vectorizer=vec)
    t0 = time.perf_counter()
    model.train()
    times.append(time.perf_counter() - t0)
t0 = time.perf_counter()
labels, _, _ = model.test(d["test_flux"], d["test_ivar"])
t_test = time.perf_counter() - t0
json.dump({"train": times, "test": t_test, "labels": np.asarray(labels).tolist(),
           "scatter_median": float(np.median(np.sqrt(model.s2)))}, open(sys.argv[2], "w"))
"""


def _survey(args):
    from orrery.lux.datasets import synthetic_survey

    n, t = args.n_stars, args.n_test
    s = synthetic_survey(n + t, args.n_pixels, snr=100, intrinsic_scatter=0.01, seed=args.seed)
    return s, slice(0, n), slice(n, n + t)


def _orrery_worker(args) -> dict:
    """Time orrery.lux.Cannon in this process (float32, or x64 with --x64)."""
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    from orrery.lux import Cannon

    s, tr, te = _survey(args)
    # data in the working dtype, as the floor gets it (float32, or float64 under x64)
    dt = np.float64 if args.x64 else np.float32
    lab, flux, ivar = s.labels[tr], s.spectra[tr].astype(dt), s.ivar[tr].astype(dt)
    cannon = Cannon(3, args.n_pixels)

    def fit():
        t0 = time.perf_counter()
        out = cannon.fit(lab, flux, ivar)
        jax.block_until_ready(out.coeffs)
        return out, time.perf_counter() - t0

    fitted, cold = fit()
    warm = [fit()[1] for _ in range(args.repeats)]
    ft, it = s.spectra[te].astype(dt), s.ivar[te].astype(dt)
    t0 = time.perf_counter()
    res = fitted.infer_labels(ft, it)
    test_cold = time.perf_counter() - t0
    tests = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = fitted.infer_labels(ft, it)
        tests.append(time.perf_counter() - t0)
    return {
        "train_cold": cold,
        "train": warm,
        "test_cold": test_cold,
        "test": tests,
        "labels": res.labels.tolist(),
        "converged": float(np.mean(res.converged)),
        "scatter_median": float(np.median(np.asarray(fitted.scatter))),
    }


def _floor(args) -> dict:
    import numpy as np

    from orrery.lux._poly import poly_features

    s, tr, _ = _survey(args)
    lab = s.labels[tr]
    scaled = (lab - np.median(lab, 0)) / lab.std(0)
    out = {}
    for name, dt in (("float32", np.float32), ("float64", np.float64)):
        feats = np.asarray(poly_features(scaled, 2), dt)
        w, y = s.ivar[tr].astype(dt), np.nan_to_num(s.spectra[tr]).astype(dt)
        n, k = feats.shape

        def solve(feats=feats, w=w, y=y, n=n, k=k):
            outer = (feats[:, :, None] * feats[:, None, :]).reshape(n, k * k)
            gram = (w.T @ outer).reshape(-1, k, k)
            rhs = (w * y).T @ feats
            return np.linalg.solve(gram, rhs[..., None])

        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            solve()
            times.append(time.perf_counter() - t0)
        out[name] = times
    return out


def _child(args, extra: list[str], env) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, *extra, "--worker-out", str(out)]
        cmd += _size_args(args)
        subprocess.run(cmd, check=True, env=env)
        return json.loads(out.read_text())


def _size_args(args) -> list[str]:
    return [
        f"--n-stars={args.n_stars}",
        f"--n-test={args.n_test}",
        f"--n-pixels={args.n_pixels}",
        f"--repeats={args.repeats}",
        f"--seed={args.seed}",
        f"--threads={args.threads}",
    ]


def _cannon2(args, env) -> dict | None:
    import numpy as np

    s, tr, te = _survey(args)
    with tempfile.TemporaryDirectory() as tmp:
        data, out, worker = Path(tmp) / "d.npz", Path(tmp) / "o.json", Path(tmp) / "w.py"
        np.savez(
            data,
            labels=s.labels[tr],
            flux=s.spectra[tr],
            ivar=s.ivar[tr],
            test_flux=s.spectra[te],
            test_ivar=s.ivar[te],
        )
        worker.write_text(_CANNON2_WORKER)
        with_ = [a for pin in THANNON_PINS for a in ("--with", pin)]
        cmd = ["uv", "run", "--isolated", "--no-project", *with_, "python", str(worker)]
        cmd += [str(data), str(out), str(args.cannon2_repeats)]
        try:  # its progress bars are captured, and shown only if it fails
            subprocess.run(cmd, check=True, env=env, cwd=tmp, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as err:
            tail = getattr(err, "stderr", "") or ""
            print(f"The Cannon 2 could not be run ({err}); its rows are left out\n{tail[-2000:]}")
            return None
        return json.loads(out.read_text())


def _median(x):
    return sorted(x)[len(x) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 + 100 stars × 1000 pixels")
    ap.add_argument("--n-stars", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--n-pixels", type=int, default=8575)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cannon2-repeats", type=int, default=1, help="The Cannon 2 compiles nothing: 1 is warm"
    )
    ap.add_argument("--skip-cannon2", action="store_true")
    ap.add_argument("--worker", choices=("orrery", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--x64", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n_stars, args.n_test, args.n_pixels = 500, 100, 1000
    if args.worker:
        result = _orrery_worker(args) if args.worker == "orrery" else _floor(args)
        Path(args.worker_out).write_text(json.dumps(result))
        return

    env = thread_env(args.threads)
    n, p = args.n_stars, args.n_pixels
    print(
        f"The Cannon benchmark: {n} training + {args.n_test} test stars × {p} pixels × 3 "
        f"labels, degree 2; {args.threads} threads per process; load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    floor = _child(args, ["--worker", "floor"], env)
    f32 = _child(args, ["--worker", "orrery"], env)
    f64 = _child(args, ["--worker", "orrery", "--x64"], env)
    c2 = None if args.skip_cannon2 else _cannon2(args, env)
    load = os.getloadavg()

    import numpy as np

    s, _, te = _survey(args)
    truth = s.labels[te]

    def teff_rms(labels):
        return float(np.sqrt(np.mean((np.asarray(labels)[:, 0] - truth[:, 0]) ** 2)))

    fl32, fl64 = _median(floor["float32"]), _median(floor["float64"])
    rows = []
    if c2 is not None:
        rows.append(
            (
                "The Cannon 2 (annieslasso)",
                _median(c2["train"]),
                None,
                c2["test"],
                teff_rms(c2["labels"]),
                c2["scatter_median"],
            )
        )
    for name, r in (("orrery.lux.Cannon float32", f32), ("orrery.lux.Cannon x64", f64)):
        rows.append(
            (
                name,
                _median(r["train"]),
                r["train_cold"],
                _median(r["test"]),
                teff_rms(r["labels"]),
                r["scatter_median"],
            )
        )
    print()
    head = f"{'':<28}{'train warm':>12}{'cold':>9}{'test step':>11}{'Teff rms':>10}{'med s':>9}"
    print(head)
    for name, tw, tc, tt, rms, sc in rows:
        cold = f"{tc:>8.2f}s" if tc is not None else f"{'-':>9}"
        print(f"{name:<28}{tw:>11.2f}s{cold}{tt:>10.3f}s{rms:>8.3f} K{sc:>9.5f}")
    print(f"{'floor (NumPy) float32':<28}{fl32:>11.3f}s")
    print(f"{'floor (NumPy) float64':<28}{fl64:>11.3f}s")
    print()
    for label, r, fl in (("float32 / float32", f32, "float32"), ("x64 / float64", f64, "float64")):
        med = _median(r["train"]) / _median(floor[fl])
        best = min(r["train"]) / min(floor[fl])
        print(f"orrery {label} floor: {med:.1f}× (medians), {best:.1f}× (fastest of each)")
    if c2 is not None:
        test_ratio = c2["test"] / _median(f32["test"])
        train_ratio = _median(c2["train"]) / _median(f32["train"])
        rms_ratio = teff_rms(f32["labels"]) / teff_rms(c2["labels"])
        print(f"test step, The Cannon 2 / orrery float32: {test_ratio:.0f}×")
        print(f"training, The Cannon 2 / orrery float32:  {train_ratio:.1f}×")
        print(f"Teff rms orrery float32 / The Cannon 2:   {rms_ratio:.4f}")
    print(f"orrery converged: float32 {f32['converged']:.1%}, x64 {f64['converged']:.1%}")
    print(f"load average (1, 5, 15 min) after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
