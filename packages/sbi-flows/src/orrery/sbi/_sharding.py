"""Sharding a batch axis over devices (a 1-D mesh named ``"batch"``)."""

from __future__ import annotations

from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from orrery.interface import ConfigError


class DeviceLike(Protocol):
    """What this module needs of a ``jax.Device`` (``jax.Device`` is no static type)."""

    id: int
    platform: str
    process_index: int


def resolve_devices(devices: Any) -> tuple[DeviceLike, ...]:
    """``"all"`` or a sequence of devices -> a tuple of distinct devices."""
    if isinstance(devices, str):
        if devices != "all":
            raise ConfigError(
                f"devices: expected None, 'all' or a sequence of jax.Device, got {devices!r}"
            )
        return tuple(jax.devices())
    try:
        devs: tuple[Any, ...] = (devices,) if isinstance(devices, jax.Device) else tuple(devices)
    except TypeError:  # not iterable: an int, a float, an object
        hint = (
            f"; for the first {devices} devices pass jax.devices()[:{devices}]"
            if isinstance(devices, int) and not isinstance(devices, bool)
            else ""
        )
        raise ConfigError(
            f"devices: expected None, 'all' or a sequence of jax.Device, got "
            f"{type(devices).__name__} {devices!r}{hint}"
        ) from None
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise ConfigError(f"devices: expected a non-empty sequence of jax.Device, got {devices!r}")
    if len(set(devs)) != len(devs):
        raise ConfigError(f"devices: each device may appear once, got {devs}")
    return devs


def shard_batch(devices: Any, model: Any, *batched: jax.Array) -> tuple[Any, tuple, int]:
    """Replicate ``model`` and split the leading axis of ``batched`` over ``devices``.

    The batch is padded (by repeating its last row) to a multiple of the device
    count; the caller drops the padding with the returned original size.
    """
    devs = resolve_devices(devices)
    mesh = Mesh(devs, ("batch",))
    n = batched[0].shape[0]
    pad = -n % len(devs)
    if pad:
        batched = tuple(
            jnp.concatenate([b, jnp.repeat(b[-1:], pad, axis=0)], axis=0) for b in batched
        )
    split = NamedSharding(mesh, PartitionSpec("batch"))
    arrays, static = eqx.partition(model, eqx.is_array)
    arrays = jax.tree.map(lambda a: _put(a, NamedSharding(mesh, PartitionSpec())), arrays)
    return eqx.combine(arrays, static), tuple(_put(b, split) for b in batched), n


def _put(x: jax.Array, sharding: NamedSharding) -> jax.Array:
    """``device_put``, also onto devices of other processes (under ``jax.distributed``).

    Every process holds the whole value; each builds only its own devices' shards.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda i: np.asarray(host[i]))


def gather(x: jax.Array) -> np.ndarray:
    """A NumPy copy of ``x``; under ``jax.distributed`` gathered from every process.

    Every process of the cluster must call this for the same array.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental.multihost_utils import process_allgather

        return np.asarray(process_allgather(x, tiled=True))
    return np.asarray(x)
