"""Sharding a batch axis over devices (a 1-D mesh named ``"batch"``)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from orrery.interface import ConfigError


def resolve_devices(devices: Any) -> tuple[jax.Device, ...]:
    """``"all"`` or a sequence of devices -> a tuple of distinct devices."""
    if isinstance(devices, str):
        if devices != "all":
            raise ConfigError(
                f"devices: expected None, 'all' or a sequence of jax.Device, got {devices!r}"
            )
        return tuple(jax.devices())
    devs = (devices,) if isinstance(devices, jax.Device) else tuple(devices)
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
    arrays = jax.device_put(arrays, NamedSharding(mesh, PartitionSpec()))
    return eqx.combine(arrays, static), jax.device_put(batched, split), n
