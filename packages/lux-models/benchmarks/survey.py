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
well below the data at the default size, so the fit really streams). With
``--aligned-memory`` also ``aligned``: in memory from arrays that start 64-byte
aligned, which JAX shares, so the fit does not copy its data first (most NumPy
arrays are copied: the in-memory fit's usual case, and its cost). Per child: the
first fit (cold: compilation included) and the median of ``--repeats`` more (warm),
as stars/s, the ratio of warm throughput to the in-memory one measured in the same
round (from the medians and from the fastest of each), the warm fits' median CPU
seconds (all threads), the RSS before the data (imports and JAX), the peak RSS of
the whole child (compilation included) and the peak of the warm fits alone (Linux:
the peak mark is reset after the cold fit). ``--rounds N`` runs the in-memory and
source children N times in turn and summarises them (median, least and most; each
ratio against the in-memory child of its own round). What generating and ingesting
wrote is flushed to disk (``os.sync``) before anything is timed.

With the store, one more child labels it (`Cannon.infer_labels(store,
catalogue=..., executor=...)`, a model fitted in memory on 2,000 stars) in this
process (two chunks at a time on threads) and on each of ``--workers`` spawned
worker processes (default 1 and 2; each worker on ``--threads / workers`` threads
through `orrery.lux.survey.process_pool`), cold (worker start-up and compilation)
and then ``--label-repeats`` warm runs, against the in-memory test step on up to
4,096 stars. Peak RSS of this child and of its largest worker.

``--part`` picks what runs: ``ingest`` (write_spectra's stars/s, kept in
``ingest.json``), ``train``, ``label``, ``scaling`` (labelling on 1 and 2 workers
alone, unpinned and then each worker pinned to a core of its own with
``process_pool(..., pin=True)``, 8,192 stars by default, warm median of 2: about four
minutes, for a quiet machine); default all but ``scaling``. Warm labelling runs read
a hard-linked view of the store at a new path, so each chunk is hashed once per run
by the worker that reads it, as in a survey labelled once. Where the survey does not
fit in memory the in-memory fit takes its first ``--memory-stars`` stars (default: as
many as fit).

Every child gets ``--threads`` threads (default 2) through the BLAS/OpenMP
variables and ``XLA_FLAGS``. The load average is printed with the figures.

    uv run python packages/lux-models/benchmarks/survey.py               # 4,000 stars
    uv run python packages/lux-models/benchmarks/survey.py --part scaling
    uv run python packages/lux-models/benchmarks/survey.py --stars 300000 --keep DIR \
        --sources store --budgets 2GiB --repeats 0 --label-repeats 0 --workers 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def _aligned_copy(arr: np.ndarray) -> np.ndarray:
    """``arr`` copied into memory that starts 64-byte aligned: JAX on the CPU then shares
    it, so a fit does not copy its data first (as it must for most NumPy arrays)."""
    buf = np.empty(arr.nbytes + 64, np.uint8)
    first = (-buf.ctypes.data) % 64
    out = buf[first : first + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    return out


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    n = args.stars
    if args.child in ("memory", "aligned"):  # the first --memory-stars rows, read whole
        rows = slice(0, args.memory_stars)
        labels = np.load(folder / "labels.npy")[rows]
        load = _aligned_copy if args.child == "aligned" else np.array
        flux = load(np.load(folder / "flux.npy", mmap_mode="r")[rows])
        ivar = load(np.load(folder / "ivar.npy", mmap_mode="r")[rows])
        n = len(flux)

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

    times, cpu = [], []
    in_memory = args.child in ("memory", "aligned")
    repeats = max(args.repeats, 2) if in_memory else args.repeats  # warm: the bar
    for _ in range(1 + repeats):
        t0, c0 = time.perf_counter(), _cpu_seconds()
        jax.block_until_ready(fit().coeffs)
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu_seconds() - c0)
        if len(times) == 1:  # the cold fit's compilation is not part of the warm peak
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child
            # started by this (large) parent would report the parent's peak
            peak = _peak_since_reset() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            warm_peak = _reset_peak()
    warm_peak = None if len(times) == 1 else warm_peak
    if warm_peak is not None and len(times) > 1:
        warm_peak = _peak_since_reset()
    return {
        "stars": n,
        "cold": n / times[0],
        "warm": n / float(np.median(times[1:])) if len(times) > 1 else None,
        "fastest": n / float(np.min(times[1:])) if len(times) > 1 else None,
        "warm_cpu": float(np.median(cpu[1:])) if len(cpu) > 1 else None,
        "base_rss": base_rss,
        "peak_rss": peak,
        "warm_peak_rss": warm_peak,
    }


def _trained(store, n_train: int = 2000):
    """A Cannon fitted in memory on the store's first ``n_train`` stars."""
    from orrery.lux import Cannon

    train = store.read(0, min(store.n_stars, n_train))
    assert train.labels is not None
    return Cannon(3, store.n_pixels).fit(train.labels, train.flux, train.ivar)


def _pool(workers: int, threads: int, pin: bool):
    """A spawned pool whose workers share ``threads`` (one each when there are as many),
    each pinned to cores of its own with ``pin``."""
    from orrery.lux.survey import process_pool

    return process_pool(workers, threads=max(1, threads // workers), pin=pin)


def _view(store: Path, folder: Path) -> Path:
    """``store`` hard-linked at ``folder`` (copied where links fail): the same bytes at a
    path no process has read, so every chunk is hashed again, once, by whoever reads it."""
    for root, _, files in os.walk(store):
        target = folder / Path(root).relative_to(store)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(root) / name, target / name)
            except OSError:
                shutil.copy2(Path(root) / name, target / name)
    return folder


def label_child(args) -> dict:
    """Labelling: the in-memory test step, then the store on each of ``--workers``.

    0 workers: this process (two chunks at a time on threads). Each executor labels
    the store ``1 + --label-repeats`` times into fresh catalogues: cold (worker
    start-up, imports and compilation included), then warm (the same workers again,
    the median), each warm run on a hard-linked view of the store at a new path, so
    that every chunk is hashed once by the worker that reads it, whatever the number
    of workers (as when a survey is labelled: each chunk read once). With ``--pin``
    both unpinned and pinned pools (each worker on cores of its own) run. Peak RSS:
    this process, and the largest worker (Linux counts a worker once it has exited,
    so each pool is shut down before the next).
    """
    from orrery.lux.survey import SpectraStore

    folder = Path(args.folder)
    store = SpectraStore(folder / "store")
    n = store.n_stars
    cannon = _trained(store)
    sub = store.read(0, min(n, 4096))
    cannon.infer_labels(sub.flux, sub.ivar)  # compile for this shape
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        cannon.infer_labels(sub.flux, sub.ivar)
        rates.append(len(sub.flux) / (time.perf_counter() - t0))
    out: dict = {"memory": float(np.median(rates)), "memory_stars": len(sub.flux)}
    del sub
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for pin in (False, True) if args.pin else (False,):
            for workers in args.workers:
                key = f"{workers}{'p' if pin else ''}"
                pool = _pool(workers, args.threads, pin) if workers else None
                times = []
                for run in range(1 + args.label_repeats):
                    source = (
                        store
                        if run == 0
                        else SpectraStore(_view(store.path, Path(tmp) / f"view_{key}_{run}"))
                    )
                    t0 = time.perf_counter()
                    cannon.infer_labels(
                        source,
                        catalogue=Path(tmp) / f"labels_{key}_{run}",
                        executor=pool,
                        progress=False,
                    )
                    times.append(time.perf_counter() - t0)
                out[f"{key}_cold"] = n / times[0]
                if len(times) > 1:
                    out[f"{key}_warm"] = n / float(np.median(times[1:]))
                if pool is not None:
                    pool.shutdown()
    out["peak_rss"] = (
        _peak_since_reset() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    # an upper bound: a worker's ru_maxrss starts from this process's RSS when it forked
    out["worker_peak_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out["load"] = os.getloadavg()
    return out


def _label_table(args, r: dict) -> str:
    if "error" in r:
        return f"labelling: {r['error']}"
    gib = 2**30
    lines = [
        "| labelling | stars/s cold | stars/s warm | vs in-memory test step (cold / warm) |",
        "|---|---|---|---|",
        f"| in memory, {r['memory_stars']:,} stars | | {r['memory']:,.0f} | 1.00x |",
    ]
    for pin in (False, True) if args.pin else (False,):
        for workers in args.workers:
            key = f"{workers}{'p' if pin else ''}"
            name = "store, this process" if workers == 0 else f"store, {workers} worker(s)"
            name += ", pinned" if pin and workers else ""
            cold, warm = r[f"{key}_cold"], r.get(f"{key}_warm")
            ratio = f"{cold / r['memory']:.2f}x / " + (
                f"{warm / r['memory']:.2f}x" if warm else "-"
            )
            shown = f"{warm:,.0f}" if warm else "-"
            lines.append(f"| {name} | {cold:,.0f} | {shown} | {ratio} |")
    lines.append(
        f"\npeak RSS: this process {r['peak_rss'] / gib:.2f} GiB, largest worker "
        f"{r['worker_peak_rss'] / gib:.2f} GiB; load average after {r['load']}"
    )
    for key, what in (("", "unpinned"), ("p", "pinned, one core each")):
        if f"1{key}_warm" in r and f"2{key}_warm" in r:
            scale = r[f"2{key}_warm"] / r[f"1{key}_warm"]
            lines.append(f"1 -> 2 workers (warm, {what}): {scale:.2f}x")
    return "\n".join(lines)


def _run_child(args, kind: str, budget: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(args.folder)]
    cmd += ["--repeats", str(args.repeats)] + (["--budget", budget] if budget else [])
    cmd += ["--stars", str(args.stars), "--memory-stars", str(args.memory_stars)]
    cmd += ["--threads", str(args.threads), "--label-repeats", str(args.label_repeats)]
    cmd += ["--workers", *map(str, args.workers)] + (["--pin"] if args.pin else [])
    proc = subprocess.run(
        cmd, env=thread_env(args.threads), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _write_store(folder: Path) -> dict | None:
    """The store written from the ``.npy`` files (once; its timing kept in ``ingest.json``)."""
    try:
        from orrery.lux.survey import write_spectra
    except ImportError:
        return None
    record = folder / "ingest.json"
    if not (folder / "store").exists():
        t0 = time.perf_counter()
        source = NpySource(folder)
        write_spectra(folder / "store", source, progress=False)
        seconds = time.perf_counter() - t0
        info = {"stars": source.n_stars, "seconds": seconds, "load": os.getloadavg()}
        record.write_text(json.dumps(info))
    return json.loads(record.read_text()) if record.exists() else {}


def _table(rows: list[tuple[str, str, dict]]) -> str:
    memory = next((r for k, _, r in rows if k == "memory" and "cold" in r), None)
    gib = 2**30

    def ratio(r, key):
        return f"{r[key] / memory[key]:.2f}x" if memory and r[key] and memory[key] else "-"

    lines = [
        "| source | stars | budget | cold (stars/s) | warm (stars/s) | warm vs memory "
        "| fastest vs memory | warm CPU s | RSS before data | peak RSS (cold) "
        "| peak RSS (warm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, budget, r in rows:
        if "error" in r:
            lines.append(f"| {kind} | | {budget or '-'} | {r['error']} | | | | | | | |")
            continue
        warm = f"{r['warm']:,.0f}" if r["warm"] else "-"
        cpu = f"{r['warm_cpu']:.2f}" if r.get("warm_cpu") else "-"
        lines.append(
            f"| {kind} | {r['stars']:,} | {budget or '-'} | {r['cold']:,.0f} | {warm} "
            f"| {ratio(r, 'warm')} | {ratio(r, 'fastest')} | {cpu} | {r['base_rss'] / gib:.2f} GiB "
            f"| {r['peak_rss'] / gib:.2f} GiB | {(r['warm_peak_rss'] or 0) / gib:.2f} GiB |"
        )
    return "\n".join(lines)


PARTS = ("ingest", "train", "label", "scaling")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--stars", type=int, default=None, help="default 4,000 (8,192 for --part scaling)"
    )
    parser.add_argument("--pixels", type=int, default=8575)
    parser.add_argument(
        "--part",
        nargs="+",
        choices=["all", *PARTS],
        default=["all"],
        help="what to measure (scaling: labelling on 1 and 2 workers only)",
    )
    parser.add_argument("--budgets", nargs="+", default=["2GiB", "256MiB"])
    parser.add_argument("--sources", nargs="+", choices=["npy", "store"], default=["npy", "store"])
    parser.add_argument("--repeats", type=int, default=2, help="warm fits after the cold one")
    parser.add_argument(
        "--aligned-memory",
        action="store_true",
        help="training: also in memory from 64-byte aligned arrays (shared by JAX, no copy)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="training: rounds of (in-memory child, source children), summarised over rounds",
    )
    parser.add_argument("--label-repeats", type=int, default=1, help="warm labelling runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="labelling also on workers pinned to cores of their own (default with scaling)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit", type=float, default=0.6)
    parser.add_argument(
        "--memory-stars",
        type=int,
        default=0,
        help="stars of the in-memory fit (default: all that fit within --memory-limit)",
    )
    parser.add_argument("--keep", help="a folder for the survey, kept (and reused) afterwards")
    parser.add_argument(
        "--child", choices=["memory", "aligned", "npy", "store", "label"], help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(label_child(args) if args.child == "label" else child(args)))
        return
    parts = set(PARTS) - {"scaling"} if "all" in args.part else set(args.part)
    if parts == {"scaling"}:  # labelling on 1 and 2 workers alone: a quick, quiet check
        args.workers, args.label_repeats = [1, 2], max(args.label_repeats, 2)
        args.pin = True  # unpinned and pinned workers
        args.stars = args.stars or 8192  # eight chunks: four per worker
    args.stars = args.stars or 4000
    with tempfile.TemporaryDirectory() as tmp:
        args.folder = Path(args.keep or tmp) / f"survey_{args.stars}x{args.pixels}"
        t0 = time.perf_counter()
        if not (args.folder / "ivar.npy").exists():
            generate(args.folder, args.stars, args.pixels, args.seed)
        ingest = _write_store(args.folder)
        # what generation and ingest wrote goes to disk now, not during the timed fits
        os.sync()
        print(
            f"survey {args.stars:,} x {args.pixels:,} on disk ({time.perf_counter() - t0:.0f} s); "
            f"threads {args.threads}; load average {os.getloadavg()}"
        )
        if ingest and "ingest" in parts and ingest.get("seconds"):
            rate = ingest["stars"] / ingest["seconds"]
            print(
                f"ingest (write_spectra from the .npy files): {rate:,.0f} stars/s "
                f"({ingest['seconds']:.0f} s, load average {ingest['load']})"
            )
        if "train" in parts:
            _train(args, has_store=ingest is not None)
        if ingest is not None and parts & {"label", "scaling"}:
            print(_label_table(args, _run_child(args, "label", None)))
        print(f"load average after: {os.getloadavg()}")


def _train(args, has_store: bool) -> None:
    """Training: ``--rounds`` rounds, each the in-memory child and then every source child,
    so that both sides of a ratio ran one after the other on the machine of that moment."""
    per_star = 2 * args.pixels * 4
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # the in-memory child holds the data twice (the arrays and the copy JAX shares)
    fits = int(args.memory_limit * physical / (2 * per_star))
    args.memory_stars = min(args.stars, args.memory_stars or fits)
    print(f"flux + ivar {args.stars * per_star / 2**30:.2f} GiB")
    rounds = []
    for number in range(args.rounds):
        rows = [("memory", "", _run_child(args, "memory", None))]
        if args.aligned_memory:
            rows.append(("memory, aligned", "", _run_child(args, "aligned", None)))
        for budget in args.budgets:
            for kind in args.sources:
                if kind == "npy" or has_store:
                    rows.append((kind, budget, _run_child(args, kind, budget)))
        print(f"\nround {number + 1} of {args.rounds}; load average after {os.getloadavg()}")
        print(_table(rows))
        rounds.append(rows)
    if len(rounds) > 1:
        print(_summary(rounds))


def _spread(values: list[float], fmt: str) -> str:
    return f"{np.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def _summary(rounds: list[list[tuple[str, str, dict]]]) -> str:
    """Median [least-most] over the rounds: warm stars/s, its ratio to the same round's
    in-memory figures (copied and, with ``--aligned-memory``, shared arrays), warm CPU
    seconds per fit and the peak RSS of the warm fits."""
    kinds = [kind for kind, _, _ in rounds[0]]
    bases = [kinds.index(k) for k in ("memory", "memory, aligned") if k in kinds]
    lines = [
        f"\nover {len(rounds)} rounds: median [least-most]",
        "| source | budget | warm (stars/s) | "
        + " | ".join(f"warm vs {kinds[b]} (same round)" for b in bases)
        + " | warm CPU s | peak RSS (warm) |",
        "|---|---|---|" + "---|" * len(bases) + "---|---|",
    ]
    for i, (kind, budget, _) in enumerate(rounds[0]):
        runs = [rows[i][2] for rows in rounds if rows[i][2].get("warm")]
        if not runs:
            continue
        ratios = []
        for b in bases:
            pairs = [(rows[b][2], rows[i][2]) for rows in rounds]
            got = [r["warm"] / m["warm"] for m, r in pairs if r.get("warm") and m.get("warm")]
            ratios.append(f"{_spread(got, '.2f')}x" if got else "-")
        peaks = [(r["warm_peak_rss"] or 0) / 2**30 for r in runs]
        lines.append(
            f"| {kind} | {budget or '-'} | {_spread([r['warm'] for r in runs], ',.0f')} | "
            + " | ".join(ratios)
            + f" | {_spread([r['warm_cpu'] for r in runs], '.2f')} | {_spread(peaks, '.2f')} GiB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
