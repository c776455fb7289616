"""Training throughput (simulations per second) on one device against ``devices="all"``.

A 5-D task, a mid-sized spline-free flow and a fixed number of epochs; each
configuration is fitted twice and the second fit is timed, so the figures are
steady-state epochs (``trainer_metadata["wall_time_s"]`` minus the compile
stage). Throughput = rows trained per epoch x epochs / seconds.

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
import time

import jax
import numpy as np

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset

DIM = 5


def dataset(n: int) -> SimulationDataset:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(n, DIM))
    return SimulationDataset.from_arrays(theta, theta + 0.3 * rng.normal(size=theta.shape))


def throughput(ds: SimulationDataset, devices, *, batch_size: int, epochs: int) -> float:
    def fit():
        post = ConditionalFlowPosterior(
            DIM,
            embedding_dim=32,
            hidden_dim=128,
            num_coupling_layers=4,
            batch_size=batch_size,
            num_epochs=epochs,
            seed=0,
        )
        t0 = time.perf_counter()
        art = post.fit(ds, devices=devices)
        meta = art.trainer_metadata
        rows = meta["steps_per_epoch"] * meta["effective_batch_size"] * meta["epochs_run"]
        return rows, time.perf_counter() - t0 - meta["compile_time_s"]

    fit()  # compile (the second fit reuses the compiled step)
    rows, seconds = fit()
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    args = parser.parse_args()
    n, epochs, batch = (4_096, 2, 256) if args.quick else (65_536, 3, 1_024)
    ds = dataset(n)
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {n} simulations")
    one = throughput(ds, None, batch_size=batch, epochs=epochs)
    print(f"1 device      {one:12,.0f} simulations/s")
    if jax.device_count() > 1:
        many = throughput(ds, "all", batch_size=batch, epochs=epochs)
        print(f"{jax.device_count()} devices     {many:12,.0f} simulations/s  ({many / one:.2f}x)")
    else:
        print("only one device: set XLA_FLAGS=--xla_force_host_platform_device_count=N to try")


if __name__ == "__main__":
    main()
