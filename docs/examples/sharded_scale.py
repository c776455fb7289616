"""The member and batch axes sharded over several devices give the same numbers as one.

An `orrery.ensemble` MAP ensemble (members sharded over a 1-D device mesh) and
`orrery.sbi` posterior sampling for a batch of observations (the batch sharded
over the same devices) are run twice, on one device and on all of them, and
compared. On a CPU-only machine the script asks XLA for 4 host devices
(`--xla_force_host_platform_device_count=4`) before JAX starts; on a machine
with several GPUs it uses them as they are.

Run: `uv run python docs/examples/sharded_scale.py [--json]`.
"""

from __future__ import annotations

import os
import sys

if "jax" not in sys.modules:  # must happen before JAX initialises its backends
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()

import argparse
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from orrery.ensemble import ensemble_map
from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset


def _sharding_of(tree: Any) -> int:
    """Number of devices the first array leaf lives on."""
    leaf = jax.tree.leaves(tree)[0]
    return len(leaf.sharding.device_set)


def _max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two pytrees of arrays, compared on the host."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def ensemble_part(devices: Any, ensemble_size: int = 16, steps: int = 300) -> tuple[Any, float]:
    """A small nonlinear regression fitted by an MAP ensemble; returns params and wall time."""
    key = jax.random.key(0)
    x = jnp.linspace(-2.0, 2.0, 128)[:, None]
    y = jnp.sin(2.0 * x[:, 0]) + 0.1 * jax.random.normal(key, (128,))

    def init_fn(k):
        k1, k2 = jax.random.split(k)
        return {"w1": jax.random.normal(k1, (1, 32)), "w2": 0.1 * jax.random.normal(k2, (32,))}

    def log_joint(p, xb, yb):
        pred = jnp.tanh(xb @ p["w1"]) @ p["w2"]
        prior = -0.5 * (jnp.sum(p["w1"] ** 2) + jnp.sum(p["w2"] ** 2))
        return -0.5 * jnp.sum(((yb - pred) / 0.1) ** 2), prior

    start = time.perf_counter()
    params, losses = ensemble_map(
        log_joint,
        init_fn,
        ensemble_size=ensemble_size,
        num_epochs=steps,
        data=(x, y),
        seed=jax.random.key(1),
        optimizer=optax.adam(1e-2),
        devices=devices,
    )
    jax.block_until_ready(params)
    return (params, losses), time.perf_counter() - start


def sbi_part(n_observations: int = 64, n_samples: int = 256):
    """A small trained posterior; returns it and the embeddings of a batch of observations."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(2000, 2))
    x = theta + 0.1 * rng.standard_normal(theta.shape)
    posterior = ConditionalFlowPosterior(
        2, embedding_dim=8, hidden_dim=16, num_coupling_layers=2, num_epochs=2, batch_size=256
    )
    posterior.fit(SimulationDataset.from_arrays(theta, x))
    x_obs = rng.uniform(-1, 1, size=(n_observations, 2))
    blocks = [[ObservationBlock("auxiliary", row)] for row in x_obs]
    embeddings = np.stack([e.embedding for e in posterior.batch_encode_observation(blocks)])
    return posterior, embeddings, n_samples


def run() -> dict[str, Any]:
    devices = jax.devices()
    (p1, l1), t1 = ensemble_part(devices=devices[:1])
    (pn, ln), tn = ensemble_part(devices="all")
    posterior, embeddings, n_samples = sbi_part()
    s1 = posterior.batch_sample_posterior(embeddings, n_samples, base_seed=3, devices=devices[:1])
    sn = posterior.batch_sample_posterior(embeddings, n_samples, base_seed=3, devices="all")
    return {
        "n_devices": len(devices),
        "ensemble_devices_used": _sharding_of(pn),
        "ensemble_max_abs_diff": _max_abs_diff(p1, pn),
        "ensemble_loss_max_abs_diff": _max_abs_diff(l1, ln),
        "ensemble_seconds": {"one_device": t1, "all_devices": tn},
        "sbi_max_abs_diff": _max_abs_diff(s1, sn),
        "sbi_shape": list(np.shape(sn)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    result = run()
    if parser.parse_args().json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
