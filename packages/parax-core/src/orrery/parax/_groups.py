"""Private helpers for parameter groups and bulk distribution edits."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from distreqx.distributions import Uniform

from orrery.interface import ValueDomainError, check_choice

from ._errors import ConfigTypeError
from ._modtools import set_at_path
from ._naming import SEP, ParamIndex, named_submodules, unknown_names_error
from ._util import fast_set
from .group import ParameterGroup, check_group_distribution


def first_level(module: Any) -> list[tuple[str, tuple, Any]]:
    """Immediate parax submodules as ``(relative name, path, module)``."""
    subs = named_submodules(module)
    paths = [p for _, p, _ in subs]
    out = []
    for name, path, sub in subs:
        if not any(len(q) < len(path) and path[: len(q)] == q for q in paths):
            out.append((name, path, sub))
    return out


def _prefixed(g: ParameterGroup, prefix: str) -> ParameterGroup:
    if not prefix:
        return g
    return g.with_param_names([f"{prefix}{SEP}{n}" for n in g.param_names])


def explicit_groups(module: Any) -> list[ParameterGroup]:
    """Explicit groups in `module`'s scope; a parent's claim drops a child group whole."""
    own: list[ParameterGroup] = list(getattr(module, "_param_groups", ()))
    claimed = {n for g in own for n in g.param_names}
    out = list(own)
    for prefix, _, sub in first_level(module):
        for g in explicit_groups(sub):
            g = _prefixed(g, prefix)
            if claimed.isdisjoint(g.param_names):
                out.append(g)
                claimed.update(g.param_names)
    return out


def _flat_names(module: Any, include_fixed: bool) -> dict[str, Any]:
    return module.named_flat_params(include_fixed=include_fixed)


def param_groups(module: Any, include_fixed: bool, explicit_only: bool) -> list[ParameterGroup]:
    groups = explicit_groups(module)
    if not include_fixed:
        free = set(module.flat_param_names())
        groups = [g for g in groups if free.issuperset(g.param_names)]
    if explicit_only:
        return groups
    taken = {n for g in groups for n in g.param_names}
    for name, p in _flat_names(module, include_fixed).items():
        if name not in taken:
            groups.append(ParameterGroup([name], distribution=p.distribution))
    return groups


def with_param_groups(module: Any, new: Any) -> Any:
    new = [new] if isinstance(new, ParameterGroup) else list(new)
    for g in new:
        if not isinstance(g, ParameterGroup):
            raise ConfigTypeError(
                f"param_groups: expected ParameterGroup objects, got {type(g).__name__}"
            )
    for g in new:
        check_group_distribution(g.param_names, g.distribution)
    known = module.flat_param_names(include_fixed=True)
    known_set = set(known)
    unknown = [n for g in new for n in g.param_names if n not in known_set]
    if unknown:
        raise unknown_names_error(unknown, known)
    claimed = {n for g in new for n in g.param_names}
    kept = [g for g in module._param_groups if claimed.isdisjoint(g.param_names)]
    return fast_set(module, _param_groups=tuple(kept + new))


def without_groups(module: Any) -> Any:
    module = fast_set(module, _param_groups=())
    for _, path, sub in first_level(module):
        module = set_at_path(module, path, without_groups(sub))
    return module


def demoted(module: Any) -> Any:
    children = [(n, p, s) for n, p, s in first_level(module) if n]
    keep, moved = [], {}
    for g in module._param_groups:
        target = None
        for i, (prefix, _, _) in enumerate(children):
            if all(n.startswith(prefix + SEP) for n in g.param_names):
                target = i
                break
        if target is None:
            keep.append(g)
        else:
            cut = len(children[target][0]) + len(SEP)
            moved.setdefault(target, []).append(
                g.with_param_names([n[cut:] for n in g.param_names])
            )
    module = fast_set(module, _param_groups=tuple(keep))
    for i, (_, path, sub) in enumerate(children):
        if i in moved:
            sub = fast_set(sub, _param_groups=tuple(sub._param_groups) + tuple(moved[i]))
        module = set_at_path(module, path, demoted(sub))
    return module


def mapped_distributions(module, mapper, dist_filter, map_others, param_groups_mode):
    def apply(d):
        # As parax 0.4: the filter is asked about every distribution, None included.
        if dist_filter is None or dist_filter(d):
            return mapper(d)
        return map_others(d) if map_others is not None else d

    if not param_groups_mode:
        return module.with_mapped_params(
            lambda p: p.with_distribution(apply(p.distribution)), include_fixed=True
        )
    return _map_group_dists(module, apply)


def _map_group_dists(module: Any, apply) -> Any:
    groups = tuple(g.with_distribution(apply(g.distribution)) for g in module._param_groups)
    module = fast_set(module, _param_groups=groups)
    for _, path, sub in first_level(module):
        module = set_at_path(module, path, _map_group_dists(sub, apply))
    return module


def uniform_distributions(
    module, percentage, param_filter, respect_bounds, remove_groups, zero_values, kwargs
):
    check_choice(zero_values, ["keep"], "zero_values")
    if isinstance(percentage, bool) or not isinstance(percentage, (int, float)):
        raise ConfigTypeError(f"percentage: expected a number, got {type(percentage).__name__}")
    if not 0 < percentage < float("inf"):
        raise ValueDomainError(f"percentage: expected a finite number > 0, got {percentage!r}")
    if remove_groups:
        module = without_groups(module)
    kwargs.setdefault("include_fixed", False)

    def make(p):
        v = p.value
        zero = v == 0
        if bool(jnp.all(zero)):
            return p  # zero_values="keep": distribution and bounds stay as they are
        # As parax 0.4, element by element: a zero element gets the degenerate
        # Uniform(0, 0) (its value kept), the others value * (1 -/+ percentage).
        a, b = v * (1.0 - percentage), v * (1.0 + percentage)
        lo = jnp.where(zero, 0.0, jnp.minimum(a, b))
        hi = jnp.where(zero, 0.0, jnp.maximum(a, b))
        if respect_bounds and p.bounds is not None:
            lo = jnp.maximum(lo, p.bounds[..., 0])
            hi = jnp.minimum(hi, p.bounds[..., 1])
        return p.with_distribution(Uniform(lo, hi))

    return module.with_mapped_params(make, param_filter, **kwargs)


__all__ = ["ParamIndex"]
