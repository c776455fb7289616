"""Private helpers behind `Module.with_params`, the value getters and `validate_params`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ConfigError, ShapeError, ValueDomainError

from . import _batch
from ._naming import ParamIndex, unknown_names_error
from .parameter import Parameter

__all__ = ["from_array", "from_mapping", "validate_param", "value_of", "with_params"]


def validate_param(name: str, p: Parameter) -> None:
    v = np.asarray(p.value)
    if not np.isfinite(v).all():
        raise ValueDomainError(f"parameter {name!r}: value {v.tolist()} is not finite")
    if p.bounds is not None:
        b = np.asarray(p.bounds)
        if ((v < b[..., 0]) | (v > b[..., 1])).any():
            raise ValueDomainError(
                f"parameter {name!r}: value {v.tolist()} is outside its bounds {b.tolist()}"
            )
    d = p.distribution
    if d is not None:
        try:
            lp = np.asarray(d.log_prob(p.value))
        except Exception as err:  # a distribution that cannot score this value
            raise ValueDomainError(
                f"parameter {name!r}: its distribution {type(d).__name__} cannot score "
                f"value {v.tolist()} ({err})"
            ) from err
        if not np.isfinite(lp).all():
            raise ValueDomainError(
                f"parameter {name!r}: value {v.tolist()} is outside the support of its "
                f"distribution {type(d).__name__} (log_prob {lp.tolist()})"
            )


def value_of(p: Parameter, scaled: bool, latent: bool) -> jax.Array:
    if latent:
        return p.latent
    v = p.value
    return v * p.scale if scaled and p.scale != 1.0 else v


def from_array(
    idx: ParamIndex, eligible: list[int], arr: Any, latent: bool
) -> dict[int, Parameter]:
    params = [idx.leaves[idx.positions[k]] for k in eligible]
    sizes = [p.size for p in params]
    total = sum(sizes)
    if isinstance(arr, (list, tuple)):  # as parax 0.4, a sequence of flat values
        arr = jnp.asarray(arr)
    shape = tuple(np.shape(arr))
    if shape != (total,):
        raise ShapeError(
            f"params: expected a 1-D array of {total} flat values "
            f"(one per selected flat parameter), got shape {shape}"
        )
    if _batch.concrete([arr]) and len(params) >= _batch.BATCH_THRESHOLD:
        return dict(zip(eligible, _batch.set_values(params, np.asarray(arr), latent), strict=True))
    out = {}
    start = 0
    for k, p, size in zip(eligible, params, sizes, strict=True):
        out[k] = p.with_value(jnp.reshape(arr[start : start + size], p.shape), latent=latent)
        start += size
    return out


def from_mapping(
    idx: ParamIndex,
    eligible: list[int],
    updates: Mapping[str, Any],
    latent: bool,
    check_unknown: bool,
    check_missing: bool,
) -> dict[int, Parameter]:
    name_to_k = {n: k for k, n in enumerate(idx.names)}
    out: dict[int, Parameter] = {}
    flat_updates: dict[int, dict[int, Any]] = {}
    unknown = []
    flat_map = None
    plain: dict[int, Any] = {}
    for key, val in updates.items():
        k = name_to_k.get(key)
        if k is not None:
            if isinstance(val, Parameter):
                out[k] = val
            else:
                plain[k] = val
            continue
        if flat_map is None:
            flat_map = {
                n: (k, i)
                for k in range(len(idx.positions))
                for i, n in enumerate(idx.flat_names(k))
            }
        if key in flat_map:
            k, i = flat_map[key]
            flat_updates.setdefault(k, {})[i] = val
        else:
            unknown.append(key)
    if unknown and check_unknown:
        raise unknown_names_error(unknown, idx.names)
    if plain:
        ks = list(plain)
        params = [idx.leaves[idx.positions[k]] for k in ks]
        values = list(plain.values())
        if len(ks) >= _batch.BATCH_THRESHOLD and _batch.concrete(values):
            flat = _batch.ravel_values(params, values)
            out.update(zip(ks, _batch.set_values(params, flat, latent), strict=True))
        else:
            for k, p, v in zip(ks, params, values, strict=True):
                out[k] = p.with_value(v, latent=latent)
    for k, elems in flat_updates.items():
        p = out[k] if k in out else idx.leaves[idx.positions[k]]
        cur = jnp.ravel(p.latent if latent else p.value)
        ids = jnp.asarray(list(elems))
        cur = cur.at[ids].set(jnp.asarray([jnp.asarray(v) for v in elems.values()]))
        out[k] = p.with_value(cur.reshape(p.shape), latent=latent)
    if check_missing:
        missing = [
            idx.names[k]
            for k in eligible
            if k not in out and len(flat_updates.get(k, {})) < idx.leaves[idx.positions[k]].size
        ]
        if missing:
            raise ConfigError(f"with_params: missing values for parameter(s) {missing}")
    return out


def with_params(
    module, params, check_missing, check_unknown, fix_others, include_fixed, latent, extra
):
    """The copy of `Module.with_params`."""
    idx = module._index()
    eligible = [k for k, p in enumerate(idx.params()) if include_fixed or not p.fixed]
    new: dict[int, Parameter] = {}
    if params is not None and not isinstance(params, Mapping):
        new = from_array(idx, eligible, params, latent)
    else:
        updates = dict(params or {})
        updates.update(extra)
        new = from_mapping(idx, eligible, updates, latent, check_unknown, check_missing)
    if fix_others:
        for k in range(len(idx.positions)):
            if k not in new:
                new[k] = idx.leaves[idx.positions[k]].as_fixed()
    return idx.rebuild(new)
