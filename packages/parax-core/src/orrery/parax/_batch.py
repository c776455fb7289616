"""Setting many parameter values at once with one compiled call.

`Module.with_params` on large modules would otherwise dispatch one small JAX op (or
more) per parameter; here all values travel in one array and every inverse transform
runs inside a single jitted function, cached per structure.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from orrery.interface import ShapeError, ValueDomainError

from ._util import fast_set
from .parameter import Parameter, check_in_bounds

# Below this many parameters the per-parameter path is cheaper than compiling.
BATCH_THRESHOLD = 64


@partial(jax.jit, static_argnums=(2, 3, 4))
def _convert(flat, transforms, shapes, dtypes, latent):
    out, bad = [], []
    start = 0
    for t, shape, dtype in zip(transforms, shapes, dtypes, strict=True):
        size = math.prod(shape)
        v = flat[start : start + size].reshape(shape).astype(dtype)
        start += size
        if t is None or latent:
            out.append(v)
        else:
            lat = t.inverse(v)
            out.append(lat)
            bad.append(jnp.any(jnp.isnan(lat) & ~jnp.isnan(v)))
    # Only inverse transforms can create NaN; skip the device->host check without them.
    return out, (jnp.stack(bad) if bad else None)


def set_values(params: list[Parameter], flat: np.ndarray, latent: bool) -> list[Parameter]:
    """New parameters holding consecutive slices of the concrete 1-D array `flat`."""
    metas = [p.metadata for p in params]
    transforms = [m.transform for m in metas]
    latents = [p.latent_value for p in params]
    shapes = tuple(x.shape for x in latents)
    bounded = [] if latent else [i for i, m in enumerate(metas) if m.bounds is not None]
    if bounded:  # one device-to-host transfer for all bounds, then a NumPy check each
        offsets = np.cumsum([0, *(math.prod(shape) for shape in shapes)])
        host = jax.device_get([metas[i].bounds for i in bounded])
        for i, b in zip(bounded, host, strict=True):
            v = np.asarray(flat[offsets[i] : offsets[i + 1]]).reshape(shapes[i])
            if np.isnan(v).any() or (v < b[..., 0]).any() or (v > b[..., 1]).any():
                check_in_bounds(v, metas[i])  # raises, naming the parameter
    dtypes = tuple(x.dtype for x in latents)
    lats, bad = _convert(jnp.asarray(flat), transforms, shapes, dtypes, latent)
    bad = np.zeros(0, bool) if bad is None else np.asarray(bad)
    if bad.any():
        with_t = [p for p in params if p.metadata.transform is not None]
        p = with_t[int(np.argmax(bad))]
        bounds = None if p.bounds is None else np.asarray(p.bounds).tolist()
        raise ValueDomainError(
            f"parameter {p.metadata.name!r}: a value is outside the domain of its transform "
            f"{type(p.metadata.transform).__name__} (inverse gave NaN; bounds={bounds})"
        )
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
