"""Setting many parameter values at once without a program per parameter.

`Module.with_params` on large modules would otherwise dispatch one small JAX op (or
more) per parameter. Here the values are cut into parameters on the host, the
inverse transforms run in one jitted function whose size follows the number of
distinct transforms (elementwise ones act on all their parameters' values at
once), and the latent arrays reach the device in one transfer per shape and dtype.
The program this replaces sliced every parameter out of one array and took XLA
13 s of CPU to compile for 1,000 parameters, 72 s for 4,000 (issue 37).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.core import Tracer

from orrery.interface import ShapeError, ValueDomainError

from ._elementwise import AbstractElementwise
from ._util import fast_set
from .parameter import Parameter, check_in_bounds

# Below this many parameters the per-parameter path is cheaper than compiling.
BATCH_THRESHOLD = 64


def _grouped(transform: Any) -> bool:
    """Elementwise bijectors act on their parameters' values concatenated into one vector."""
    return isinstance(transform, AbstractElementwise)


def _group_key(transform: Any, dtype: Any, i: int) -> Any:
    """Parameters with equal elementwise transforms share a key; others get their own."""
    if not _grouped(transform):
        return ("one", i)
    leaves, treedef = jax.tree.flatten(transform)
    if any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves):
        return ("instance", id(transform), dtype)  # arrays (Interval's bounds): per instance
    # equal structure and numbers: the same map (cheaper than hashing the module)
    return (treedef, tuple(leaves), dtype)


@eqx.filter_jit
def _inverse(transforms, values):
    # transforms' arrays are inputs, the rest is static: one program per structure
    return [t.inverse(v) for t, v in zip(transforms, values, strict=True)]


def _latents(pieces: list[np.ndarray], transforms: list[Any]) -> tuple[list[np.ndarray], list[int]]:
    """Host latent values of ``pieces`` (physical values) and the indices whose inverse gave NaN.

    Parameters sharing an elementwise transform and a dtype form one input of
    `_inverse`; any other transform takes its parameter's array as it is.
    """
    out: list[Any] = list(pieces)
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(transforms):
        if t is not None:
            groups.setdefault(_group_key(t, pieces[i].dtype, i), []).append(i)
    if not groups:
        return out, []
    members = list(groups.values())
    static = tuple(transforms[m[0]] for m in members)
    inputs = [
        np.concatenate([pieces[i].reshape(-1) for i in m])
        if _grouped(transforms[m[0]])
        else pieces[m[0]]
        for m in members
    ]
    results = jax.device_get(_inverse(static, inputs))
    bad = []
    for m, x, res in zip(members, inputs, results, strict=True):
        res = np.asarray(res)
        nan_made = np.isnan(res) & ~np.isnan(x)
        if not _grouped(transforms[m[0]]):
            out[m[0]] = res
            bad += m if nan_made.any() else []
            continue
        ends = np.cumsum([pieces[i].size for i in m])
        for i, end in zip(m, ends, strict=True):
            out[i] = res[end - pieces[i].size : end].reshape(pieces[i].shape)
        if nan_made.any():
            bad.append(m[int(np.searchsorted(ends, np.argmax(nan_made), side="right"))])
    return out, sorted(bad)


def _to_device(arrays: list[np.ndarray]) -> list[jax.Array]:
    """Device copies of ``arrays``: one transfer per shape and dtype, then JAX's own iteration.

    Iterating a device array unstacks it in chunks of 100 with one small program, so
    neither the transfers nor the programs grow with the number of arrays.
    """
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault((a.shape, a.dtype), []).append(i)
    out: list[Any] = [None] * len(arrays)
    for members in groups.values():
        stacked = jax.device_put(np.stack([arrays[i] for i in members]))
        for i, a in zip(members, stacked, strict=True):
            out[i] = a
    return out


def set_values(params: list[Parameter], flat: np.ndarray, latent: bool) -> list[Parameter]:
    """New parameters holding consecutive slices of the concrete 1-D array `flat`."""
    metas = [p.metadata for p in params]
    transforms = [m.transform for m in metas]
    latents = [p.latent_value for p in params]
    shapes = tuple(x.shape for x in latents)
    offsets = np.cumsum([0, *(math.prod(shape) for shape in shapes)])
    bounded = [] if latent else [i for i, m in enumerate(metas) if m.bounds is not None]
    if bounded:  # one device-to-host transfer for all bounds, then a NumPy check each
        host = jax.device_get([metas[i].bounds for i in bounded])
        for i, b in zip(bounded, host, strict=True):
            v = np.asarray(flat[offsets[i] : offsets[i + 1]]).reshape(shapes[i])
            if np.isnan(v).any() or (v < b[..., 0]).any() or (v > b[..., 1]).any():
                check_in_bounds(v, metas[i])  # raises, naming the parameter
    # the dtype the values had on the device before (float64 becomes float32 without x64)
    flat = np.asarray(flat, jax.dtypes.canonicalize_dtype(np.asarray(flat).dtype))
    pieces = [
        flat[offsets[i] : offsets[i + 1]].reshape(x.shape).astype(x.dtype)
        for i, x in enumerate(latents)
    ]
    lats, bad = _latents(pieces, [None] * len(pieces) if latent else transforms)
    if bad:
        p = params[bad[0]]
        bounds = None if p.bounds is None else np.asarray(p.bounds).tolist()
        raise ValueDomainError(
            f"parameter {p.metadata.name!r}: a value is outside the domain of its transform "
            f"{type(p.metadata.transform).__name__} (inverse gave NaN; bounds={bounds})"
        )
    lats = _to_device(lats)
    return [fast_set(p, latent_value=lat) for p, lat in zip(params, lats, strict=True)]


def concrete(values: list[Any]) -> bool:
    return not any(isinstance(v, Tracer) for v in values)


def ravel_values(params: list[Parameter], values: list[Any]) -> np.ndarray:
    pieces = []
    for p, v in zip(params, values, strict=True):
        arr = np.asarray(v)
        if arr.shape != p.shape:
            try:
                arr = np.broadcast_to(arr, p.shape)
            except ValueError:
                raise ShapeError(
                    f"parameter {p.metadata.name!r}: value shape {arr.shape} does not match "
                    f"parameter shape {p.shape}"
                ) from None
        pieces.append(arr.reshape(-1))
    return np.concatenate(pieces) if pieces else np.zeros((0,))
