"""Data-parallel training epochs: each minibatch split over a 1-D device mesh.

Parameters and optimizer state are replicated over the mesh; the rows of every
minibatch are split along the mesh axis ``"batch"``. The loss is the mean over
the global batch, so XLA inserts the cross-device (and, under
``jax.distributed``, cross-process) reduction of the gradients from the sharding
annotations alone; nothing here sums gradients by hand.

Both epochs (from memory and from a streamed split) use the keys of the
single-device epochs, so one device and many devices follow the same batches
and step keys and differ only by the order of floating-point reductions. Each
process places only its own devices' columns of every batch
(``jax.make_array_from_callback`` asks for addressable shards only); from a
stream it also reads only those rows (``SplitStream.epoch_groups(part=...)``).

The epochs take the model's non-trained arrays (``consts``) as an input, as the
single-device epoch does, so one compiled program serves every fit of an
architecture.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from orrery.interface import ConfigError

from .._host_keys import epoch_draws
from .._host_keys import step_keys as host_step_keys
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
        self.batch_size = batch_size
        self.mesh = Mesh(np.asarray(devs, dtype=object), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.rows = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.steps = NamedSharding(self.mesh, PartitionSpec(None, AXIS))
        self.multi_process = any(d.process_index != jax.process_index() for d in devs)
        self.part, self.offset = _local_part(devs, batch_size)

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

            def shard(index: tuple[slice, ...] | None) -> np.ndarray:
                if index is None:  # jax asks for the whole array
                    index = (slice(None),) * len(shape)
                rows = order[index[0], index[1]]
                return leaf[rows][(slice(None), slice(None), *index[2:])]

            return jax.make_array_from_callback(shape, self.steps, shard)

        return jax.tree.map(put, data)

    def place_columns(self, group: Any) -> Any:
        """This process's columns ``(g, width, ...)`` of a group -> global ``(g, batch, ...)``.

        ``group`` holds the columns ``[offset, offset + width)`` of every batch
        (``width = batch_size // part[1]``); each local device takes its slice.
        """

        def put(leaf: Any) -> jax.Array:
            host = np.asarray(leaf)
            shape = (host.shape[0], self.batch_size, *host.shape[2:])

            def shard(index: tuple[slice, ...] | None) -> np.ndarray:
                if index is None:  # jax asks for the whole array
                    index = (slice(None),) * len(shape)
                cols = index[1]
                local = slice(cols.start - self.offset, cols.stop - self.offset)
                return host[(index[0], local, *index[2:])]

            return jax.make_array_from_callback(shape, self.steps, shard)

        return jax.tree.map(put, group)

    def barrier(self, name: str) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.multi_process:
            from jax.experimental.multihost_utils import sync_global_devices

            sync_global_devices(name)


def _local_part(devices: tuple, batch_size: int) -> tuple[tuple[int, int], int]:
    """``((i, c), offset)``: the share of every batch this process's devices hold.

    The batch axis is cut into ``len(devices)`` equal blocks, one per device in
    mesh order. When this process's devices hold consecutive blocks forming part
    ``i`` of ``c`` equal parts, the process reads only that part (columns from
    ``offset``); otherwise it reads whole batches (``(0, 1)``, offset 0).
    """
    n = len(devices)
    mine = [k for k, d in enumerate(devices) if d.process_index == jax.process_index()]
    local = len(mine)
    if local and n % local == 0 and mine == list(range(mine[0], mine[0] + local)):
        if mine[0] % local == 0:
            return (mine[0] // local, n // local), mine[0] * (batch_size // n)
    return (0, 1), 0


def _make_steps(static, optimizer, loss_fn, batch_transform, dp):
    """Jitted ``steps(params, opt_state, batches, step_key_data, consts)`` over the mesh.

    ``batches`` is ``(g, batch, ...)`` split along the batch axis; the parameters,
    optimizer state, keys and ``consts`` are replicated. Returns the updated
    state and the ``g`` losses.
    """
    sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform)

    @jax.jit
    def steps(params, opt_state, batches, key_data, consts):
        keys = jax.random.wrap_key_data(key_data)

        def step(carry, xs):
            batch, k = xs
            batch = jax.lax.with_sharding_constraint(batch, dp.rows)
            params, opt_state = carry
            params, opt_state, loss = sgd_step(params, opt_state, batch, k, consts)
            params = jax.lax.with_sharding_constraint(params, dp.replicated)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, keys))
        return params, opt_state, losses

    return steps


def make_data_parallel_epoch(static, optimizer, loss_fn, batch_transform, batch_size, dp):
    """``epoch(params, opt_state, data, key, consts)`` over in-memory (host) arrays.

    The mesh-replicated state goes in and out; ``data`` is the whole training
    split on the host, of which each process places only its devices' rows.
    """
    steps = _make_steps(static, optimizer, loss_fn, batch_transform, dp)

    def epoch(params, opt_state, data, key, consts):
        n = jax.tree.leaves(data)[0].shape[0]
        # the single-device epoch's shuffle and step keys, drawn on the host
        order, step_keys = epoch_draws(np.asarray(jax.random.key_data(key)), n, batch_size)
        keys = dp.replicate(step_keys)
        batches = dp.epoch_batches(data, order)
        params, opt_state, losses = steps(params, opt_state, batches, keys, consts)
        return params, opt_state, jnp.mean(jnp.asarray(np.asarray(losses)))

    return epoch


def make_stream_data_parallel_epoch(static, optimizer, loss_fn, batch_transform, batch_size, dp):
    """``epoch(params, opt_state, stream, key, consts)`` over a streamed split.

    The epoch plan (windows, permutations) and step keys are the single-device
    streaming epoch's; each process reads only its part of every batch
    (`DataParallel.part`) and places it on its own devices.
    """
    steps = _make_steps(static, optimizer, loss_fn, batch_transform, dp)

    def epoch(params, opt_state, stream, key, consts):
        n_batches = stream.n_rows // batch_size
        perm_key, _ = jax.random.split(key)
        step_keys = host_step_keys(np.asarray(jax.random.key_data(key)), n_batches)
        losses, done = [], 0
        groups = stream.epoch_groups(perm_key, batch_size, n_batches, part=dp.part)
        for group in groups:
            g = jax.tree.leaves(group)[0].shape[0]
            if len(losses) >= 2:  # at most two groups in flight, as in one device
                losses[-2].block_until_ready()
            keys = dp.replicate(step_keys[done : done + g])
            params, opt_state, part = steps(
                params, opt_state, dp.place_columns(group), keys, consts
            )
            del group
            losses.append(part)
            done += g
        host = np.concatenate([np.asarray(part) for part in losses])
        return params, opt_state, jnp.mean(jnp.asarray(host))

    return epoch
