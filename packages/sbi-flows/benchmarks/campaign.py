"""Simulation campaigns and training from disk.

1. Campaign scaling: simulations per second of ``simulate`` with a process pool of
   1 and 2 workers, for a simulator that sleeps 10 ms per simulation (an
   expensive external code). The pools are started and warmed before timing.
   Goal: near-linear scaling (2 workers close to 2x).
2. Training throughput: seconds per epoch of ``ConditionalFlowPosterior.fit`` from
   memory, from a store that fits one window (read once, then resident) and from
   the same store with 8, 16 and 32 MiB ``memory_budget`` (every epoch re-read in
   windows with a background prefetch). An epoch's time (training and validation)
   is the median interval between the ends of epochs 2, 3, ... of one fit, so
   compilation (in epoch 1) is left out; the fits of all cases are interleaved and
   repeated, and the best repeat of each is compared (the machine may be shared).
   Goal: store >= 0.8x the in-memory throughput.
3. Verification overhead (``--part verify``): on the same 30,000 x 200 store, the
   read time of one streamed epoch (every training row, in 256-row batches, 16 MiB
   windows) before (no checks) and after (the per-epoch check: a ``stat`` of every
   chunk file), and the one-time cost of verifying every chunk (read and sha256 of
   all its bytes, done once per process when the store is opened). Goal: the
   one-time verification <= 10% of one epoch's read time.

    uv run python packages/sbi-flows/benchmarks/campaign.py [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import tempfile
import time
import warnings

import jax
import numpy as np

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate
from orrery.sbi.training import trainer

K = 200  # observation size of the training benchmark


def sleepy_simulator(theta):
    """10 ms per simulation, then a cheap deterministic spectrum."""
    time.sleep(0.01 * theta.shape[0])
    return {"auxiliary": np.sin(np.outer(theta[:, 0], np.arange(8))) + theta[:, 1:2]}


def _warm(_: int) -> int:
    import orrery.sbi.campaign  # noqa: F401  (import cost outside the timing)

    return os.getpid()


def campaign_rate(workers: int, num: int, root: str) -> float:
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_warm, range(workers)))
        start = time.perf_counter()
        simulate(
            sleepy_simulator,
            [[0.0, 1.0], [0.0, 1.0]],
            num,
            os.path.join(root, f"w{workers}"),
            chunk_size=25,
            executor=pool,
        )
        return num / (time.perf_counter() - start)


def training_data(n: int, root: str) -> tuple[SimulationDataset, str]:
    def sim(theta):
        grid = np.linspace(0.0, 1.0, K)
        return {"auxiliary": np.sin(5 * grid * theta[:, :1]) + theta[:, 1:2] * grid}

    path = simulate(
        sim,
        [[0.0, 1.0], [0.0, 1.0]],
        n,
        os.path.join(root, "train"),
        chunk_size=500,
        executor=cf.ThreadPoolExecutor(1),
    )
    from orrery.sbi._store.row_sources import StoreSource

    rows = StoreSource(path)
    theta = rows.read("parameters", 0, rows.n_rows)
    obs = {"auxiliary": rows.read("obs:auxiliary", 0, rows.n_rows)}
    return SimulationDataset.from_arrays(theta, obs, bounds=[[0, 1], [0, 1]]), path


def _stamped(epoch, stamps):
    def run(*args):
        out = jax.block_until_ready(epoch(*args))
        stamps.append(time.perf_counter())
        return out

    return run


def seconds_per_epoch(dataset, epochs: int) -> float:
    config = dict(
        embedding_dim=16,
        hidden_dim=32,
        num_coupling_layers=3,
        batch_size=256,
        seed=0,
        stable_inverse_forward_max_abs_error_threshold=None,
        stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
        stable_cube_edge_hit_rate_threshold=None,
    )
    stamps: list[float] = []
    saved = trainer._compiled, trainer.make_stream_epoch
    # in memory the trainer compiles the epoch ahead of time; a stream's epoch is a function
    trainer._compiled = lambda *a: (_stamped(saved[0](*a)[0], stamps), False)
    trainer.make_stream_epoch = lambda *a: _stamped(saved[1](*a), stamps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "still improving": a short fit
            ConditionalFlowPosterior(2, num_epochs=1 + epochs, **config).fit(dataset)
    finally:
        trainer._compiled, trainer.make_stream_epoch = saved
    return float(np.median(np.diff(stamps)))


def verification_overhead(path: str, repeats: int) -> None:
    """Read time of a streamed epoch with and without the checks, and the one-time hashing."""
    from pathlib import Path

    from orrery.sbi._store import read as _store_read
    from orrery.sbi._store.write import read_config

    config = read_config(Path(path))
    ds = SimulationDataset.from_store(path, memory_budget=16 * 2**20)
    checked = ds.check_source

    def epoch(check: bool) -> float:
        ds.check_source = checked if check else (lambda: None)
        start = time.perf_counter()
        rows = sum(b.parameters.shape[0] for b in ds.iter_batches("train", 256, seed=1))
        assert rows == ds.n_train
        return time.perf_counter() - start

    times: dict[str, list[float]] = {
        k: [] for k in ("before", "after", "hash", "check", "open cold", "open warm")
    }
    for repeat in range(repeats):  # interleaved: a changing load hits each case alike
        for label in ("open cold", "open warm"):
            if label == "open cold":
                _store_read._VERIFIED.clear()
            start = time.perf_counter()
            SimulationDataset.from_store(path, memory_budget=16 * 2**20)
            times[label].append(time.perf_counter() - start)
        for check in (False, True) if repeat % 2 else (True, False):  # alternate the order
            times["after" if check else "before"].append(epoch(check))
        start = time.perf_counter()
        checked()  # warm: every chunk verified already, only its files are stat'ed
        times["check"].append(time.perf_counter() - start)
        _store_read._VERIFIED.clear()  # as in a new process
        start = time.perf_counter()
        _store_read.verify_store(Path(path), config)
        times["hash"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
    print(f"store: {config['num_simulations']} x {K}, {config['n_chunks']} chunks, {size:.0f} MiB")
    print(f"streamed epoch read, before (no checks): {best['before']:.3f} s")
    print(f"streamed epoch read, after (per-epoch check): {best['after']:.3f} s")
    print(f"per-epoch check alone: {1e3 * best['check']:.2f} ms")
    print(f"verification of every chunk (once per process): {best['hash']:.3f} s")
    print(
        f"from_store: {best['open cold']:.3f} s verifying every chunk, {best['open warm']:.3f} s "
        "when verified already in this process (its statistics pass reads the store twice)"
    )
    print(
        f"verification / one epoch's read: {best['hash'] / best['before']:.1%} (goal <= 10%); "
        f"per-epoch check / epoch: {best['check'] / best['before']:.2%}; amortised over the "
        f"recipe's 60-epoch floor: {(best['hash'] / 60 + best['check']) / best['before']:.1%} "
        "per epoch"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--part", choices=["all", "campaign", "training", "verify"], default="all")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved fits per case")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[8, 16, 32], help="memory budgets, MiB"
    )
    args = parser.parse_args()
    num_sims = 200 if args.quick else 2000
    n_train = 10_000 if args.quick else 30_000
    epochs = 2 if args.quick else 4
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as root:
        if args.part in ("all", "campaign"):
            rates = {w: campaign_rate(w, num_sims, root) for w in (1, 2)}
            for w, rate in rates.items():
                print(f"campaign, {w} worker(s): {rate:7.1f} simulations/s")
            print(f"scaling 2 vs 1 workers: {rates[2] / rates[1]:.2f}x (ideal 2x)")
        if args.part == "campaign":
            return

        memory, path = training_data(n_train, root)
        if args.part in ("all", "verify"):
            verification_overhead(path, args.repeats)
        if args.part == "verify":
            return
        resident = SimulationDataset.from_store(path)
        print(f"training set: {n_train} x {K} float64 ({n_train * K * 8 / 2**20:.0f} MiB)")
        cases = [("memory", memory), ("store (one window)", resident)]
        for mib in args.budgets:
            small = SimulationDataset.from_store(path, memory_budget=mib * 2**20)
            cases.append((f"store ({mib} MiB, {small.window_rows}-row windows)", small))
        # Interleaved repeats (memory, store, store, ..., memory, ...): a load that comes
        # and goes from other processes hits every case alike; the best repeat is kept.
        results: dict[str, list[float]] = {label: [] for label, _ in cases}
        for _ in range(args.repeats):
            for label, dataset in cases:
                results[label].append(seconds_per_epoch(dataset, epochs))
        best = {label: min(times) for label, times in results.items()}
        for label, _ in cases:
            runs = ", ".join(f"{t:.3f}" for t in results[label])
            print(f"{label:>38}: {best[label]:.3f} s/epoch (repeats: {runs})")
        for label, _ in cases[1:]:
            ratio = best["memory"] / best[label]
            print(f"throughput {label} / memory: {ratio:.2f}x (goal >= 0.8x)")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
