"""The Cannon over a survey on disk: training from a source against training in memory.

A synthetic survey (3 labels, quadratic, S/N 100, intrinsic scatter 0.01, float32;
default 4,000 stars x 8,575 pixels, ``--stars 300000`` for the real run) is
generated on disk chunk by chunk (``labels.npy``, ``flux.npy``, ``ivar.npy``), so
the parent never holds it whole. Each measurement then runs in a fresh child
process, so its peak RSS (``resource.getrusage``) is its own:

- ``memory``: the arrays read whole into memory, ``Cannon.fit(labels, flux, ivar)``
  (only where they fit: ``--memory-limit``, default 60 % of physical memory);
- ``npy``: ``Cannon.fit(source, memory_budget=B)`` from a `SpectraSource` that
  reads row ranges of the ``.npy`` files with ``os.pread`` (no memory map, whose
  touched pages would count in the RSS);
- ``store``: the same from the on-disk `orrery.lux.survey.SpectraStore` (written
  from the ``.npy`` files once; each chunk's digest is checked on every read),
  when ``orrery.lux.survey`` is there;

each for every budget of ``--budgets`` (default ``2GiB`` and ``256MiB``, the latter
well below the data at the default size, so the fit really streams). Per child:
the first fit (cold: compilation included) and the median of ``--repeats`` more
(warm), as stars/s, the ratio of warm throughput to the in-memory one measured in
the same run (from the medians and from the fastest of each), the RSS before the
data (imports and JAX), the peak RSS of the whole child (compilation included) and
the peak of the warm fits alone (Linux: the peak mark is reset after the cold fit).

With the store, one more child labels it (`Cannon.infer_labels(store,
catalogue=..., executor=...)`, a model fitted in memory on 2,000 stars) in this
process and on 1 and 2 spawned worker processes, each twice (cold: worker start-up
and compilation; warm), against the in-memory test step on up to 4,096 stars.

Every child gets ``--threads`` threads (default 2) through the BLAS/OpenMP
variables and ``XLA_FLAGS``. The load average is printed with the figures.

    uv run python packages/lux-models/benchmarks/survey.py               # 4,000 stars
    uv run python packages/lux-models/benchmarks/survey.py --stars 300000 --keep DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import thread_env


# ---------------------------------------------------------------- the survey on disk
def generate(folder: Path, n_stars: int, n_pixels: int, seed: int, chunk: int = 2048) -> None:
    """Write ``labels.npy``, ``flux.npy``, ``ivar.npy`` (float32) a chunk of stars at a time."""
    import jax.numpy as jnp

    from orrery.lux._poly import poly_features
    from orrery.lux.datasets import synthetic_survey

    model = synthetic_survey(1, n_pixels, snr=100, intrinsic_scatter=0.01, seed=seed)
    lo = model.label_offset - model.label_scale
    hi = model.label_offset + model.label_scale
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    fmt = np.lib.format
    labels = fmt.open_memmap(folder / "labels.npy", "w+", np.float64, (n_stars, 3))
    flux = fmt.open_memmap(folder / "flux.npy", "w+", np.float32, (n_stars, n_pixels))
    ivar = fmt.open_memmap(folder / "ivar.npy", "w+", np.float32, (n_stars, n_pixels))
    for start in range(0, n_stars, chunk):
        stop = min(n_stars, start + chunk)
        lab = rng.uniform(lo, hi, size=(stop - start, 3))
        scaled = jnp.asarray((lab - model.label_offset) / model.label_scale)
        feats = np.asarray(poly_features(scaled, 2))
        clean = feats @ model.coeffs.T
        sigma = np.abs(clean) / 100.0
        noise = rng.standard_normal(clean.shape) * np.sqrt(sigma**2 + 0.01**2)
        labels[start:stop] = lab
        flux[start:stop] = clean + noise
        ivar[start:stop] = 1.0 / sigma**2
    for arr in (labels, flux, ivar):
        arr.flush()
    del labels, flux, ivar


class NpySource:
    """A `SpectraSource` over ``flux.npy``/``ivar.npy``: row ranges read with ``os.pread``."""

    def __init__(self, folder: Path):
        self.labels = np.load(folder / "labels.npy")
        self._files = {}
        for name in ("flux", "ivar"):
            with open(folder / f"{name}.npy", "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                offset = f.tell()
            self._files[name] = (os.open(folder / f"{name}.npy", os.O_RDONLY), offset, dtype)
        self._shape = shape

    @property
    def n_stars(self) -> int:
        return int(self._shape[0])

    @property
    def n_pixels(self) -> int:
        return int(self._shape[1])

    def _rows(self, name: str, start: int, stop: int) -> np.ndarray:
        fd, offset, dtype = self._files[name]
        row = self.n_pixels * dtype.itemsize
        nbytes = (stop - start) * row
        # 64-byte aligned, as JAX on the CPU shares (does not copy) such buffers
        buf = np.empty(nbytes + 64, np.uint8)
        first = (-buf.ctypes.data) % 64
        out = buf[first : first + nbytes]
        view, done = memoryview(out.data), 0
        while done < nbytes:
            done += os.preadv(fd, [view[done:]], offset + start * row + done)
        return out.view(dtype).reshape(stop - start, self.n_pixels)

    def read(self, start: int, stop: int):
        from orrery.lux._source import SpectraChunk

        return SpectraChunk(
            self._rows("flux", start, stop),
            self._rows("ivar", start, stop),
            self.labels[start:stop],
            None,
        )


def _rss_now() -> int:
    """Resident bytes of this process now (Linux; else the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> int | None:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); None where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return 0


def _peak_since_reset() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


# ---------------------------------------------------------------- one child, one measurement
def child(args) -> dict:
    import jax

    from orrery.lux import Cannon

    folder = Path(args.folder)
    base_rss = _rss_now()
    if args.child == "memory":
        labels = np.load(folder / "labels.npy")
        flux, ivar = np.load(folder / "flux.npy"), np.load(folder / "ivar.npy")

        def fit():
            return Cannon(3, flux.shape[1]).fit(labels, flux, ivar)
    else:
        if args.child == "store":
            from orrery.lux.survey import SpectraStore

            source = SpectraStore(folder / "store")
        else:
            source = NpySource(folder)

        def fit():
            return Cannon(3, source.n_pixels).fit(source, memory_budget=args.budget)

    times = []
    for _ in range(1 + args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fit().coeffs)
        times.append(time.perf_counter() - t0)
        if len(times) == 1:  # the cold fit's compilation is not part of the warm peak
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            warm_peak = _reset_peak()
    if warm_peak is not None:
        warm_peak = _peak_since_reset()
    return {
        "cold": times[0],
        "warm": float(np.median(times[1:])),
        "fastest": float(np.min(times[1:])),
        "base_rss": base_rss,
        "peak_rss": peak,
        "warm_peak_rss": warm_peak,
    }


def label_child(args) -> dict:
    """Labelling: the in-memory test step, then the store on 0 (this process), 1 and 2 workers.

    The model is fitted in memory on the first 2,000 stars. Each executor labels
    the whole store twice, into fresh catalogues: cold (worker start-up, imports
    and compilation included) and warm (the same workers again).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from orrery.lux import Cannon
    from orrery.lux.survey import SpectraStore

    folder = Path(args.folder)
    store = SpectraStore(folder / "store")
    n = store.n_stars
    train = store.read(0, min(n, 2000))
    assert train.labels is not None
    cannon = Cannon(3, store.n_pixels).fit(train.labels, train.flux, train.ivar)
    sub = store.read(0, min(n, 4096))
    cannon.infer_labels(sub.flux, sub.ivar)  # compile for this shape
    t0 = time.perf_counter()
    cannon.infer_labels(sub.flux, sub.ivar)
    out = {"memory": len(sub.flux) / (time.perf_counter() - t0)}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for workers in (0, 1, 2):
            # spawned, not forked: a fork of a process running JAX's threads can deadlock
            spawn = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(workers, mp_context=spawn) if workers else None
            for run in ("cold", "warm"):
                t0 = time.perf_counter()
                cannon.infer_labels(
                    store,
                    catalogue=Path(tmp) / f"labels_{workers}_{run}",
                    executor=pool,
                    progress=False,
                )
                out[f"{workers}_{run}"] = n / (time.perf_counter() - t0)
            if pool is not None:
                pool.shutdown()
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _label_table(args, r: dict) -> str:
    if "error" in r:
        return f"labelling: {r['error']}"
    lines = [
        "| labelling | stars/s cold | stars/s warm | vs in-memory test step (warm) |",
        "|---|---|---|---|",
        f"| in memory, {min(args.stars, 4096)} stars | | {r['memory']:,.0f} | 1.00x |",
    ]
    for workers, name in ((0, "store, this process"), (1, "store, 1 worker"), (2, "2 workers")):
        cold, warm = r[f"{workers}_cold"], r[f"{workers}_warm"]
        lines.append(f"| {name} | {cold:,.0f} | {warm:,.0f} | {warm / r['memory']:.2f}x |")
    lines.append(f"\n1 -> 2 workers (warm): {r['2_warm'] / r['1_warm']:.2f}x")
    return "\n".join(lines)


def _run_child(args, kind: str, budget: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(args.folder)]
    cmd += ["--repeats", str(args.repeats)] + (["--budget", budget] if budget else [])
    proc = subprocess.run(
        cmd, env=thread_env(args.threads), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _write_store(folder: Path) -> bool:
    try:
        from orrery.lux.survey import write_spectra
    except ImportError:
        return False
    if not (folder / "store").exists():
        write_spectra(folder / "store", NpySource(folder), progress=False)
    return True


def _table(args, rows: list[tuple[str, str, dict]]) -> str:
    n = args.stars
    memory = next((r for k, _, r in rows if k == "memory" and "warm" in r), None)
    gib = 2**30
    lines = [
        "| source | budget | cold (stars/s) | warm (stars/s) | warm vs memory "
        "| fastest vs memory | RSS before data | peak RSS (cold) | peak RSS (warm) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, budget, r in rows:
        if "error" in r:
            lines.append(f"| {kind} | {budget or '-'} | {r['error']} | | | | | | |")
            continue
        ratio = f"{memory['warm'] / r['warm']:.2f}x" if memory else "-"
        best = f"{memory['fastest'] / r['fastest']:.2f}x" if memory else "-"
        lines.append(
            f"| {kind} | {budget or '-'} | {n / r['cold']:,.0f} | {n / r['warm']:,.0f} | {ratio} "
            f"| {best} | {r['base_rss'] / gib:.2f} GiB | {r['peak_rss'] / gib:.2f} GiB "
            f"| {(r['warm_peak_rss'] or 0) / gib:.2f} GiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stars", type=int, default=4000)
    parser.add_argument("--pixels", type=int, default=8575)
    parser.add_argument("--budgets", nargs="+", default=["2GiB", "256MiB"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit", type=float, default=0.6)
    parser.add_argument("--keep", help="a folder for the survey, kept (and reused) afterwards")
    parser.add_argument(
        "--child", choices=["memory", "npy", "store", "label"], help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(label_child(args) if args.child == "label" else child(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.folder = Path(args.keep or tmp) / f"survey_{args.stars}x{args.pixels}"
        t0 = time.perf_counter()
        if not (args.folder / "ivar.npy").exists():
            generate(args.folder, args.stars, args.pixels, args.seed)
        has_store = _write_store(args.folder)
        print(f"survey {args.stars} x {args.pixels} on disk ({time.perf_counter() - t0:.0f} s)")
        data = 2 * args.stars * args.pixels * 4
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        rows = []
        if data < args.memory_limit * physical:
            rows.append(("memory", "", _run_child(args, "memory", None)))
        for budget in args.budgets:
            for kind in ("npy", "store") if has_store else ("npy",):
                rows.append((kind, budget, _run_child(args, kind, budget)))
        print(
            f"flux + ivar {data / 2**30:.2f} GiB; threads {args.threads}; "
            f"load average {os.getloadavg()}"
        )
        print(_table(args, rows))
        if has_store:
            print(_label_table(args, _run_child(args, "label", None)))


if __name__ == "__main__":
    main()
