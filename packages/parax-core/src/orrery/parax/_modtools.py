"""Private helpers behind the structural `Module.with_*` methods."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

from orrery.interface import ConfigError

from ._errors import ConfigKeyError, ConfigTypeError
from ._flat import flat_element
from ._naming import (
    ParamIndex,
    is_module,
    join,
    named_submodules,
    path_segments,
    unknown_names_error,
)
from ._updates import validate_param, value_of
from ._util import fast_set
from .parameter import Parameter
from .tree import is_parameter


def get_key(obj: Any, key: Any) -> Any:
    if isinstance(key, GetAttrKey):
        return getattr(obj, key.name)
    if isinstance(key, DictKey):
        return obj[key.key]
    if isinstance(key, SequenceKey):
        return obj[key.idx]
    raise ConfigTypeError(f"cannot follow path key {key!r}")


def set_key(obj: Any, key: Any, value: Any) -> Any:
    """Copy of `obj` with the child at `key` replaced."""
    if isinstance(key, GetAttrKey):
        return fast_set(obj, **{key.name: value})
    if isinstance(key, DictKey):
        new = dict(obj)
        new[key.key] = value
        return type(obj)(new) if type(obj) is not dict else new
    if isinstance(key, SequenceKey):
        items = list(obj)
        items[key.idx] = value
        return type(obj)(items) if isinstance(obj, tuple) else items
    raise ConfigTypeError(f"cannot follow path key {key!r}")


def set_at_path(obj: Any, path: Sequence[Any], value: Any) -> Any:
    if not path:
        return value
    child = get_key(obj, path[0])
    return set_key(obj, path[0], set_at_path(child, path[1:], value))


def _matches_prefix(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "_")


def filter_indices(idx: ParamIndex, param_filter: Any, prefixes: bool, ignore_unknown: bool):
    """Indices of parameters selected by a name/names/objects/predicate filter."""
    n = len(idx.positions)
    if param_filter is None:
        return list(range(n))
    if callable(param_filter) and not isinstance(param_filter, (str, Parameter)):
        return [k for k in range(n) if param_filter(idx.names[k])]
    items = [param_filter] if isinstance(param_filter, (str, Parameter)) else list(param_filter)
    chosen: set[int] = set()
    unknown = []
    by_id = None
    for item in items:
        if isinstance(item, Parameter):
            if by_id is None:
                by_id = {id(idx.leaves[pos]): k for k, pos in enumerate(idx.positions)}
            k = by_id.get(id(item))
            if (
                k is None
                and isinstance(item.metadata.name, str)
                and item.metadata.name in idx.names
            ):
                k = idx.names.index(item.metadata.name)
            if k is None:
                unknown.append(repr(item.metadata.name))
            else:
                chosen.add(k)
        elif isinstance(item, str):
            hits = (
                [k for k in range(n) if _matches_prefix(idx.names[k], item)]
                if prefixes
                else ([idx.names.index(item)] if item in idx.names else [])
            )
            if not hits:
                unknown.append(item)
            chosen.update(hits)
        else:
            raise ConfigTypeError(f"param_filter: unsupported item {item!r}")
    if unknown and not ignore_unknown:
        raise unknown_names_error(unknown, idx.names)
    return sorted(chosen)


def raw_path(path: Sequence[Any]) -> str:
    """Dotted attribute path of a jax key path, e.g. ``layers.1.a``."""
    parts = []
    for key in path:
        if isinstance(key, GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, DictKey):
            parts.append(str(key.key))
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        else:
            parts.append(str(key))
    return ".".join(parts)


def submodule_positions(module: Any, submodules: Any) -> set[int]:
    """Leaf positions (as in `ParamIndex`) of the parameters inside the given submodules.

    Submodules are given by name or as objects (matched by identity); containment is
    decided by pytree path, so parameter objects shared between modules do not leak.
    """
    items = [submodules] if isinstance(submodules, str) or is_module(submodules) else submodules
    subs = named_submodules(module)
    by_name = {n: p for n, p, _ in subs if n}
    by_attr = {raw_path(p): p for _, p, _ in subs}
    paths = []
    for item in items:
        if isinstance(item, str):
            path = by_name.get(item, by_attr.get(item))
            if path is None:
                raise unknown_names_error([item], list(by_name) + list(by_attr), "submodule")
            paths.append(path)
        else:
            found = [p for _, p, m in subs if m is item]
            if not found:
                raise ConfigError(f"submodules: {type(item).__name__} object is not in this module")
            paths.extend(found)
    flat, _ = jax.tree_util.tree_flatten_with_path(module, is_leaf=is_parameter)
    out = set()
    for pos, (path, _) in enumerate(flat):
        if any(tuple(path[: len(p)]) == tuple(p) for p in paths):
            out.add(pos)
    return out


def children(module: Any) -> list[Any]:
    leaves = jax.tree_util.tree_leaves(
        module, is_leaf=lambda x: x is not module and (is_module(x) or is_parameter(x))
    )
    return [x for x in leaves if is_module(x)]


def _convert(obj: Any, name: str, value: Any) -> Any:
    for f in dataclasses.fields(obj):
        if f.name == name:
            conv = f.metadata.get("converter")
            return conv(value) if conv is not None else value
    raise ConfigError(
        f"{type(obj).__name__} has no field {name!r}; fields: "
        f"{[f.name for f in dataclasses.fields(obj)]}"
    )


def with_fields(obj: Any, *args: Mapping[str, Any], **kwargs: Any) -> Any:
    changes: dict[str, Any] = {}
    for a in args:
        changes.update(a)
    changes.update(kwargs)
    return fast_set(obj, **{k: _convert(obj, k, v) for k, v in changes.items()})


def _dotted(path: str | Sequence[str]) -> list[str]:
    return path.split(".") if isinstance(path, str) else list(path)


def _set_dotted(obj: Any, parts: list[str], value: Any) -> Any:
    head, rest = parts[0], parts[1:]
    if isinstance(obj, Mapping):
        key = head if head in obj else next((k for k in obj if str(k) == head), head)
        if key not in obj:
            raise ConfigError(f"with_attrs: no key {head!r} in {list(obj)}")
        new = dict(obj)
        new[key] = _set_dotted(obj[key], rest, value) if rest else value
        return new
    if isinstance(obj, (list, tuple)):
        i = int(head)
        items = list(obj)
        items[i] = _set_dotted(obj[i], rest, value) if rest else value
        return tuple(items) if isinstance(obj, tuple) else items
    if not hasattr(obj, head):
        raise ConfigError(f"with_attrs: {type(obj).__name__} has no attribute {head!r}")
    child = _set_dotted(getattr(obj, head), rest, value) if rest else value
    if dataclasses.is_dataclass(obj) and not rest:
        child = _convert(obj, head, child)
    return fast_set(obj, **{head: child})


def with_attrs(module: Any, args: tuple, kwargs: dict) -> Any:
    updates: dict[str, Any] = {}
    if len(args) == 2 and isinstance(args[0], str):
        updates[args[0]] = args[1]
    elif len(args) == 1 and isinstance(args[0], Mapping):
        updates.update(args[0])
    elif args:
        raise ConfigTypeError(
            "with_attrs: pass (path, value), a {path: value} dict and/or keywords"
        )
    updates.update(kwargs)
    for path, value in updates.items():
        module = _set_dotted(module, _dotted(path), value)
    return module


def with_submodules(module: Any, args: tuple, kwargs: dict) -> Any:
    updates: dict[str, Any] = {}
    if len(args) == 2 and isinstance(args[0], str):
        updates[args[0]] = args[1]
    elif len(args) == 1 and isinstance(args[0], Mapping):
        updates.update(args[0])
    elif args:
        raise ConfigTypeError(
            "with_submodules: pass (name, module), a {name: module} dict or keywords"
        )
    updates.update(kwargs)
    subs = {n: p for n, p, _ in named_submodules(module)}
    unknown = [n for n in updates if n not in subs]
    if unknown:
        raise unknown_names_error(unknown, list(subs), "submodule")
    for name, value in updates.items():
        module = set_at_path(module, subs[name], value)
    return module


def with_submodule_fields(module: Any, submodule: Any, args: tuple, kwargs: dict) -> Any:
    parts = _dotted(submodule)
    target = module
    for part in parts:
        target = (
            target[int(part)]
            if isinstance(target, (list, tuple))
            else (target[part] if isinstance(target, Mapping) else getattr(target, part))
        )
    return _set_dotted(module, parts, with_fields(target, *args, **kwargs))


def with_defaults(cls: type, args: tuple, kwargs: dict) -> type:
    base_init = cls.__init__

    def __init__(self, *a: Any, **kw: Any) -> None:
        merged = {**kwargs, **kw}
        base_init(self, *(a if a else args), **merged)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__})


def merged(module: Any, modules: Any) -> Any:
    others = [modules] if is_module(modules) else list(modules)
    for other in others:
        free = other.named_params()
        idx = ParamIndex(module)
        unknown = [n for n in free if n not in idx.names]
        if unknown:
            raise unknown_names_error(unknown, idx.names)
        module = module.with_params(free)
        groups = other.param_groups(explicit_only=True, include_fixed=True)
        if groups:
            module = module.with_param_groups(groups)
    return module


def lookup(module: Any, path: str) -> Any:
    """``module[path]``: a parameter by (flat) name, else an attribute by dotted path."""
    if not isinstance(path, str):
        raise ConfigTypeError(f"path: expected a str, got {type(path).__name__}")
    named = module.named_params(include_fixed=True)
    if path in named:
        return named[path]
    flat = module.named_flat_params(include_fixed=True)
    if path in flat:
        return flat[path]
    obj = module
    for part in path.split("."):
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        elif isinstance(obj, (list, tuple)) and part.lstrip("-").isdigit():
            try:
                obj = obj[int(part)]
            except IndexError:
                obj = dataclasses.MISSING
        elif part and not part.startswith("__") and hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            obj = dataclasses.MISSING
        if obj is dataclasses.MISSING:
            known = list(named) + [n for n in flat if n not in named]
            raise ConfigKeyError(
                f"path: {path!r} is neither a parameter name nor an attribute path; "
                + str(unknown_names_error([path], known))
            )
    return obj


def saveable(obj: Any) -> Any:
    """Copy with every field declared ``field(save=False)`` reset, as `load` rebuilds it."""
    if isinstance(obj, (list, tuple)):
        items = [saveable(v) for v in obj]
        return type(obj)(items) if isinstance(obj, tuple) else items
    if type(obj) is dict:
        return {k: saveable(v) for k, v in obj.items()}
    if not is_module(obj):
        return obj
    changes = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("parax_save", True):
            if f.default is not dataclasses.MISSING:
                changes[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                changes[f.name] = f.default_factory()
            else:
                changes[f.name] = None
        else:
            changes[f.name] = saveable(getattr(obj, f.name))
    return fast_set(obj, **changes)


def select(
    module: Any,
    idx: ParamIndex,
    param_filter: Any = None,
    *,
    include_fixed: bool = False,
    submodules: Any = None,
    prefixes: bool = False,
    ignore_unknown: bool = False,
) -> list[int]:
    ks = filter_indices(idx, param_filter, prefixes, ignore_unknown)
    if not include_fixed:
        ks = [k for k in ks if not idx.leaves[idx.positions[k]].fixed]
    if submodules is not None:
        allowed = submodule_positions(module, submodules)
        ks = [k for k in ks if idx.positions[k] in allowed]
    return ks


def iter_params(module, param_filter, include_fixed, flatten, submodules):
    """``(name, Parameter)`` pairs of `Module.iter_params`."""
    idx = module._index()
    ks = select(module, idx, param_filter, include_fixed=include_fixed, submodules=submodules)
    if not flatten:
        for k in ks:
            yield idx.names[k], idx.leaves[idx.positions[k]]
        return
    items = []
    for k in ks:
        p = idx.leaves[idx.positions[k]]
        if p.shape == ():
            items.append((idx.names[k], p))
        else:
            items.extend((n, flat_element(p, i, n)) for i, n in enumerate(idx.flat_names(k)))
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"duplicate flattened parameter names {dup}; rename the parameters")
    yield from items


def mapped_params(module, mapper, param_filter, map_others, prefixes, include_fixed, ignore):
    """The copy of `Module.with_mapped_params`."""
    idx = module._index()
    chosen = set(
        select(
            module,
            idx,
            param_filter,
            include_fixed=include_fixed,
            prefixes=prefixes,
            ignore_unknown=ignore,
        )
    )
    new = {}
    for k in range(len(idx.positions)):
        p = idx.leaves[idx.positions[k]]
        if k in chosen:
            new[k] = mapper(p)
        elif map_others is not None:
            new[k] = map_others(p)
    return idx.rebuild(new)


_ALL_PARAMS_KEYWORDS = ("fix_others", "include_fixed", "prefixes", "ignore_unknown")


def all_params_keywords(kwargs: dict, must_be_true: str, method: str) -> dict:
    """Check the keywords of `with_all_params_fixed` / `_free` (parax 0.4 passes them on to
    `with_free_params`); returns the keywords for `with_mapped_params`.

    Every parameter is selected, so `prefixes` and `ignore_unknown` change nothing, and the
    keyword that would make the call a no-op (`must_be_true`) must stay True.
    """
    unknown = sorted(set(kwargs) - set(_ALL_PARAMS_KEYWORDS))
    if unknown:
        raise ConfigTypeError(
            f"{method}: unexpected keyword(s) {unknown}; it takes {list(_ALL_PARAMS_KEYWORDS)}"
        )
    if not kwargs.get(must_be_true, True):
        raise ConfigError(
            f"{method}: {must_be_true}=False is not allowed (it would change nothing)"
        )
    return {
        "include_fixed": True,
        "prefixes": bool(kwargs.get("prefixes", False)),
        "ignore_unknown": bool(kwargs.get("ignore_unknown", False)),
    }


def path_to_param_name(module: Any, path: Sequence[Any]) -> str:
    """`Module.path_to_param_name`: the qualified name of the parameter at a key path."""
    segs, last, by_key = path_segments(module, tuple(path))
    leaf = module
    for key in path:
        leaf = get_key(leaf, key)
    own = leaf.metadata.name if isinstance(leaf, Parameter) and not by_key else None
    return join(segs, own if isinstance(own, str) else last)


def flat_values(
    module: Any, include_fixed: bool, submodules: Any, scaled: bool, latent: bool, param_filter: Any
) -> jax.Array:
    """`Module.flat_param_values`: the selected values raveled into one 1-D array."""
    vals = [
        jnp.ravel(value_of(p, scaled, latent))
        for _, p in module.iter_params(
            param_filter, include_fixed=include_fixed, submodules=submodules
        )
    ]
    return jnp.concatenate(vals) if vals else jnp.zeros((0,))


def named_flat_values(
    module: Any, scaled: bool, return_floats: bool, latent: bool, selection: Mapping[str, Any]
) -> dict[str, Any]:
    """`Module.named_flat_param_values`: scalar values (or floats) by flat name."""
    out = {}
    for name, p in module.named_flat_params(**selection).items():
        v = value_of(p, scaled, latent)
        out[name] = float(v) if return_floats else v
    return out


def count_free(module: Any, flat: bool) -> int:
    """`Module.num_params` (``flat`` False) or `Module.num_flat_params` (True)."""
    params = [p for p in module._index().params() if not p.fixed]
    return sum(p.size for p in params) if flat else len(params)


def validate_all(module: Any, include_fixed: bool) -> Any:
    """`Module.validate_params`: check every parameter's value; return the module."""
    for name, p in module.iter_params(include_fixed=include_fixed):
        validate_param(name, p)
    return module


def fix_or_free(module: Any, param_filter: Any, fix: bool, flip_others: bool, kwargs: Any) -> Any:
    """`Module.with_fixed_params` (``fix``) or `Module.with_free_params` (not ``fix``).

    ``flip_others`` gives every unselected parameter the opposite state; ``kwargs`` are
    `Module.with_mapped_params`'s, ``include_fixed`` defaulting to True.
    """
    kwargs.setdefault("include_fixed", True)
    if fix:
        mapper, others = (lambda p: p.as_fixed()), (lambda p: p.as_free())
    else:
        mapper, others = (lambda p: p.as_free()), (lambda p: p.as_fixed())
    return module.with_mapped_params(
        mapper, param_filter, map_others=others if flip_others else None, **kwargs
    )
