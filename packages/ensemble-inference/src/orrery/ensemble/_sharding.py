"""Placing the member axis on a 1-D device mesh.

Members are independent, so the only layout that matters is: every array with
a member axis is split along that axis over the mesh, and the data are
replicated. Constraints are applied inside jit (so GSPMD keeps the layout
through ``scan`` and ``vmap``) and with ``device_put`` at the boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple, Protocol, TypeGuard, TypeVar

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import ArrayLike

from orrery.interface import ConfigError

MEMBER_AXIS = "ensemble"


class DeviceLike(Protocol):
    """A ``jax.Device`` as a type checker sees it (jaxlib ships no stub for the class)."""

    @property
    def id(self) -> int: ...

    @property
    def platform(self) -> str: ...


Devices = Literal["all"] | DeviceLike | Sequence[DeviceLike] | None
"""What ``devices=`` takes: ``None``, ``"all"``, one ``jax.Device`` or a sequence of them."""

Tree = TypeVar("Tree")


class MemberShardings(NamedTuple):
    """Hashable pair of shardings: split over members, and fully replicated."""

    members: NamedSharding
    replicated: NamedSharding


def _is_device(value: object) -> TypeGuard[DeviceLike]:
    return isinstance(value, jax.Device)


def normalize_devices(devices: Devices) -> Literal["all"] | tuple[DeviceLike, ...] | None:
    """Turn ``devices`` into ``None``, ``"all"`` or a (hashable) tuple of devices."""
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices != "all":
            raise ConfigError(
                f"devices: expected None, 'all' or a sequence of jax.Device, got {devices!r}"
            )
        return "all"
    if isinstance(devices, jax.Device):
        candidates: Iterable[object] = (devices,)
    elif isinstance(devices, Iterable):
        candidates = devices
    else:
        raise ConfigError(
            "devices: expected None, 'all' or a sequence of jax.Device, "
            f"got {type(devices).__name__}"
        )
    devs: list[DeviceLike] = []
    for d in candidates:
        if not _is_device(d):
            raise ConfigError(f"devices: expected jax.Device entries, got {d!r}")
        devs.append(d)
    if not devs:
        raise ConfigError("devices: expected at least one device, got an empty sequence")
    if len(set(devs)) != len(devs):
        raise ConfigError(f"devices: each device may appear once, got {tuple(devs)}")
    return tuple(devs)


def resolve_shardings(devices: Devices, ensemble_size: int) -> MemberShardings | None:
    """Build the member/replicated shardings, or ``None`` for default placement."""
    devs = normalize_devices(devices)
    if devs is None:
        return None
    if devs == "all":
        devs = tuple(jax.devices())
    if ensemble_size % len(devs):
        raise ConfigError(
            f"ensemble_size: {ensemble_size} members cannot be split evenly over {len(devs)} "
            f"devices; use a multiple of {len(devs)} or pass fewer devices"
        )
    mesh = Mesh(np.asarray(devs, dtype=object), (MEMBER_AXIS,))
    return MemberShardings(
        NamedSharding(mesh, PartitionSpec(MEMBER_AXIS)), NamedSharding(mesh, PartitionSpec())
    )


def _has_member_axis(leaf: object) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray)) and leaf.ndim >= 1


def constrain_members(tree: Tree, shardings: MemberShardings | None) -> Tree:
    """Inside jit: keep every array with a member axis split over the mesh."""
    if shardings is None:
        return tree
    return jax.tree.map(
        lambda a: (
            jax.lax.with_sharding_constraint(a, shardings.members) if _has_member_axis(a) else a
        ),
        tree,
    )


def put_members(tree: Tree, shardings: MemberShardings | None) -> Tree:
    """Outside jit: move member-stacked arrays onto the mesh."""
    if shardings is None:
        return tree
    return jax.tree.map(
        lambda a: jax.device_put(_canonical(a), shardings.members) if _has_member_axis(a) else a,
        tree,
    )


def put_replicated(tree: Tree, shardings: MemberShardings | None) -> Tree:
    """Outside jit: replicate data on every device of the mesh."""
    if shardings is None:
        return tree
    return jax.tree.map(
        lambda a: jax.device_put(_canonical(a), shardings.replicated) if eqx.is_array(a) else a,
        tree,
    )


def _canonical(a: ArrayLike) -> ArrayLike:
    # A NumPy float64 array under x32: cast on the host first, so that the check
    # that every process passes the same value compares like with like.
    if isinstance(a, np.ndarray):
        return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)
    return a


def to_host(value: ArrayLike) -> np.ndarray:
    """A NumPy copy of ``value``, gathered from every process when it spans several.

    Under ``jax.distributed`` a member-sharded array holds only this process's
    members; reading it whole needs a collective, so every process must call this.
    """
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental.multihost_utils import process_allgather

        return np.asarray(process_allgather(value, tiled=True))
    return np.asarray(value)
