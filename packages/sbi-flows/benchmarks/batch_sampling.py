"""batch_sample_posterior (one jitted vmapped call) against a Python loop of sample_posterior.

1,000 observations x 1,000 draws each, on a posterior trained briefly on the
10-D gaussian_linear task (the weights do not matter for speed). The loop is
timed on a subset of observations and extrapolated linearly (every iteration
does the same work). Goal: batch >= 20x faster than the loop.

A third line times the arithmetic floor: one jitted call of the flow's own
``sample`` over all draws at once (embeddings repeated per draw). When the loop
is within a small factor of that floor, as on a few CPU cores, the work is
compute-bound and no batching can give 20x; the goal presumes an accelerator,
where each loop iteration leaves the device mostly idle.

    uv run python packages/sbi-flows/benchmarks/batch_sampling.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

DIM = 10


def trained_posterior() -> ConditionalFlowPosterior:
    rng = np.random.default_rng(0)
    theta = rng.normal(0, np.sqrt(0.1), size=(2_000, DIM))
    x = theta + rng.normal(0, np.sqrt(0.1), size=theta.shape)
    posterior = ConditionalFlowPosterior(
        DIM,
        embedding_dim=32,
        hidden_dim=64,
        num_coupling_layers=5,
        conditioner_depth=2,
        photometry_embedding_dim=32,
        parameter_space="physical",
        num_epochs=2,
        batch_size=128,
        seed=0,
    )
    posterior.fit(SimulationDataset.from_arrays(theta, x))
    return posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 observations, loop on 20")
    parser.add_argument("--n-obs", type=int, default=1_000)
    parser.add_argument("--n-draws", type=int, default=1_000)
    parser.add_argument("--loop-subset", type=int, default=100)
    args = parser.parse_args()
    n_obs, loop_subset = (200, 20) if args.quick else (args.n_obs, args.loop_subset)
    n_draws = args.n_draws

    posterior = trained_posterior()
    rng = np.random.default_rng(1)
    x_obs = rng.normal(0, np.sqrt(0.2), size=(n_obs, DIM))
    encoded = posterior.batch_encode_observation(
        [[ObservationBlock("auxiliary", x)] for x in x_obs]
    )
    embeddings = np.stack([e.embedding for e in encoded])

    posterior.batch_sample_posterior(embeddings, n_draws, base_seed=0)  # compile
    start = time.perf_counter()
    batch = posterior.batch_sample_posterior(embeddings, n_draws, base_seed=1)
    batch_time = time.perf_counter() - start
    assert batch.shape == (n_obs, n_draws, DIM)

    posterior.sample_posterior(encoded[0], n_draws, seed=0)  # compile
    start = time.perf_counter()
    for i in range(loop_subset):
        posterior.sample_posterior(encoded[i], n_draws, seed=i)
    loop_time = (time.perf_counter() - start) * n_obs / loop_subset

    flow = posterior.model.flow
    conditions = jnp.repeat(jnp.asarray(embeddings), n_draws, axis=0)
    floor_fn = eqx.filter_jit(lambda f, k, c: f.sample(k, condition=c))  # one draw per row
    jax.block_until_ready(floor_fn(flow, jax.random.key(0), conditions))  # compile
    start = time.perf_counter()
    jax.block_until_ready(floor_fn(flow, jax.random.key(1), conditions))
    floor_time = time.perf_counter() - start

    print(f"{n_obs} observations x {n_draws} draws, {DIM}-D spline flow")
    print(f"  batch_sample_posterior : {batch_time:8.3f} s")
    print(
        f"  loop of sample_posterior: {loop_time:8.3f} s "
        f"(timed on {loop_subset}, extrapolated to {n_obs})"
    )
    print(f"  floor (one flow.sample) : {floor_time:8.3f} s")
    print(f"  speed-up: {loop_time / batch_time:.1f}x  (goal >= 20x)")
    print(
        f"  batch / floor: {batch_time / floor_time:.2f}; "
        f"loop / floor: {loop_time / floor_time:.2f}"
    )


if __name__ == "__main__":
    main()
