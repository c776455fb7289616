"""Training throughput (simulations per second) on one device against ``devices="all"``.

A 5-D task, a mid-sized spline-free flow and a fixed number of epochs, from
memory and from a campaign store streamed in several windows (each process
reads only its devices' part of every batch); each configuration is fitted for
E + 1 epochs and epochs 2 to E + 1 are timed, so the figures are steady-state
epochs (training and validation; the first epoch's compile left out).
Throughput = rows trained in those E epochs / their seconds.

On CPU with forced host devices (``--xla_force_host_platform_device_count``) the
"devices" share the same cores, so "all" cannot beat one device and usually
loses to the all-reduce; the line shows that the path runs, not a speed-up.
On a machine with several GPUs the ratio is the scaling.

    uv run python packages/sbi-flows/benchmarks/data_parallel.py [--quick]
    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        uv run python packages/sbi-flows/benchmarks/data_parallel.py --quick
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate
from orrery.sbi.training import _progress

DIM = 5


def dataset(n: int) -> SimulationDataset:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(n, DIM))
    return SimulationDataset.from_arrays(theta, theta + 0.3 * rng.normal(size=theta.shape))


def simulator(theta: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": theta + 0.3 * np.sin(7.0 * theta)}


def store_dataset(n: int, directory: Path) -> object:
    """A campaign store of ``n`` simulations, opened in about four windows."""
    chunk = 1_024
    path = simulate(
        simulator,
        [[-3.0, 3.0]] * DIM,
        n,
        directory / "campaign",
        chunk_size=chunk,
        executor=cf.ThreadPoolExecutor(1),
    )
    row_bytes = 4 * 2 * DIM
    budget = 2 * 8 * 2 * DIM * chunk + 12 * row_bytes * (n // 4)
    return SimulationDataset.from_store(path, memory_budget=budget)


def throughput(ds, devices, *, batch_size: int, epochs: int) -> float:
    # The end of every epoch, as the trainer reports it (after the epoch's loss is
    # on the host): epochs 2..E+1 are steady state, whatever epoch 1 spent compiling.
    ends: list[float] = []
    report = _progress.EpochProgress.epoch

    def timed_report(self, *args, **kwargs):
        ends.append(time.perf_counter())
        return report(self, *args, **kwargs)

    post = ConditionalFlowPosterior(
        DIM,
        embedding_dim=32,
        hidden_dim=128,
        num_coupling_layers=4,
        batch_size=batch_size,
        num_epochs=epochs + 1,
        seed=0,
    )
    _progress.EpochProgress.epoch = timed_report
    try:
        meta = post.fit(ds, devices=devices).trainer_metadata
    finally:
        _progress.EpochProgress.epoch = report
    rows = meta["steps_per_epoch"] * meta["effective_batch_size"] * (len(ends) - 1)
    return rows / (ends[-1] - ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    args = parser.parse_args()
    n, epochs, batch = (4_096, 2, 256) if args.quick else (65_536, 3, 1_024)
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {n} simulations")
    with tempfile.TemporaryDirectory() as tmp:
        streamed = store_dataset(n, Path(tmp))
        cases = [("memory", dataset(n)), (f"store ({streamed.window_rows} rows/window)", streamed)]
        for name, ds in cases:
            one = throughput(ds, None, batch_size=batch, epochs=epochs)
            print(f"{name:28s} 1 device   {one:12,.0f} simulations/s")
            if jax.device_count() > 1:
                many = throughput(ds, "all", batch_size=batch, epochs=epochs)
                print(
                    f"{name:28s} {jax.device_count()} devices  {many:12,.0f} simulations/s"
                    f"  ({many / one:.2f}x)"
                )
    if jax.device_count() == 1:
        print("only one device: set XLA_FLAGS=--xla_force_host_platform_device_count=N to try")


if __name__ == "__main__":
    main()
