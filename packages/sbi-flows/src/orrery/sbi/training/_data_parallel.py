"""Data-parallel training epochs: each minibatch split over a 1-D device mesh.

Parameters and optimizer state are replicated over the mesh; the rows of every
minibatch are split along the mesh axis ``"batch"``. The loss is the mean over
the global batch, so XLA inserts the cross-device (and, under
``jax.distributed``, cross-process) reduction of the gradients from the sharding
annotations alone; nothing here sums gradients by hand.

The epoch's shuffle is computed on the host with the same keys as the
single-device epoch, so one device and many devices follow the same batches
and step keys and differ only by the order of floating-point reductions. Each
process gathers only the rows of its own devices' shards
(``jax.make_array_from_callback`` asks for addressable shards only).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from orrery.interface import ConfigError

from .._sharding import resolve_devices
from ._optim import make_sgd_step

AXIS = "batch"


class DataParallel:
    """The mesh of a data-parallel fit and the moves on and off it."""

    def __init__(self, devices: Any, batch_size: int):
        devs = resolve_devices(devices)
        if batch_size % len(devs):
            raise ConfigError(
                f"batch_size: the global batch of {batch_size} rows cannot be split evenly "
                f"over {len(devs)} devices; use a multiple of {len(devs)}"
            )
        self.devices = devs
        self.mesh = Mesh(np.asarray(devs, dtype=object), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.rows = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.steps = NamedSharding(self.mesh, PartitionSpec(None, AXIS))
        self.multi_process = any(d.process_index != jax.process_index() for d in devs)

    def replicate(self, tree: Any) -> Any:
        """Copy host (or single-device) arrays onto every device of the mesh."""

        def put(a: Any) -> Any:
            if not eqx.is_array(a):
                return a
            host = np.asarray(a)
            return jax.make_array_from_callback(
                host.shape, self.replicated, lambda i: np.asarray(host[i])
            )

        return jax.tree.map(put, tree)

    def local(self, tree: Any) -> Any:
        """Replicated mesh arrays -> ordinary arrays on this process's default device."""
        return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)) if eqx.is_array(a) else a, tree)

    def epoch_batches(self, data: Any, order: np.ndarray) -> Any:
        """Rows ``data[order]`` as ``(steps, batch, ...)`` arrays split along the batch axis.

        Only the shards on this process's devices are gathered from ``data``.
        """

        def put(leaf: np.ndarray) -> jax.Array:
            shape = order.shape + leaf.shape[1:]

            def shard(index: tuple) -> np.ndarray:
                rows = order[index[0], index[1]]
                return leaf[rows][(slice(None), slice(None), *index[2:])]

            return jax.make_array_from_callback(shape, self.steps, shard)

        return jax.tree.map(put, data)

    def barrier(self, name: str) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.multi_process:
            from jax.experimental.multihost_utils import sync_global_devices

            sync_global_devices(name)


def epoch_order(key: jax.Array, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The single-device epoch's shuffle and key, on the host: ``(order, key_data)``.

    ``order`` has shape ``(steps, batch_size)``; it is the permutation the
    single-device epoch draws from the same key.
    """
    n_batches = n // batch_size
    perm_key, _ = jax.random.split(key)
    order = np.asarray(jax.random.permutation(perm_key, n))[: n_batches * batch_size]
    return order.reshape(n_batches, batch_size), np.asarray(jax.random.key_data(key))


def make_data_parallel_epoch(static, optimizer, loss_fn, batch_transform, _batch_size, dp):
    """One jitted epoch over pre-shuffled ``(steps, batch, ...)`` batches split over ``dp``."""

    sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform)
    rep = dp.replicated

    @jax.jit
    def epoch_fn(params, opt_state, batches, key_data):
        key = jax.random.wrap_key_data(key_data)
        n_batches = jax.tree.leaves(batches)[0].shape[0]
        _, step_key = jax.random.split(key)
        step_keys = jax.random.split(step_key, n_batches)

        def step(carry, xs):
            batch, k = xs
            batch = jax.lax.with_sharding_constraint(batch, dp.rows)
            params, opt_state, loss = sgd_step(*carry, batch, k)
            params = jax.lax.with_sharding_constraint(params, rep)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, step_keys))
        return params, opt_state, jnp.mean(losses)

    return epoch_fn
