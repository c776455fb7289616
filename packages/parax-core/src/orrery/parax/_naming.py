"""Name building: turning pytree paths into parameter names.

Rules (parax 0.4's): path segments are joined by ``_``; an attribute or sequence-index
segment is replaced by the explicit name of the child it leads to (a named `Module` or
`Parameter`); the attributes of a transparent module, and fields declared
``field(transparent=True)``, contribute no segment (an explicit name still does); dict
keys always become ``str(k)``; sequence items use their index; the root's own name is
never included.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import jax
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

from orrery.interface import ConfigError, close_matches

from ._flat import flat_names_of
from .parameter import Parameter
from .tree import is_parameter

SEP = "_"
_CACHE: dict[Any, tuple[list[int], list[tuple[str, ...]], list[str | None], list[bool]]] = {}
_TRANSPARENT_FIELDS: dict[type, frozenset[str]] = {}


def is_module(x: Any) -> bool:
    return getattr(type(x), "_parax_module", False)


def is_transparent(x: Any) -> bool:
    inst = getattr(x, "_transparent", None)
    if inst is not None:
        return bool(inst)
    return bool(getattr(type(x), "__parax_transparent__", False))


def transparent_fields(cls: type) -> frozenset[str]:
    out = _TRANSPARENT_FIELDS.get(cls)
    if out is None:
        names = set()
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if f.metadata.get("parax_transparent", False):
                    names.add(f.name)
        out = _TRANSPARENT_FIELDS[cls] = frozenset(names)
    return out


def _key_segment(parent: Any, key: Any) -> tuple[str | None, Any, bool]:
    """The default segment for `key`, the child it leads to, and whether the key names it.

    As parax 0.4: an attribute of a transparent module, or a transparent field, has no
    default segment; a dict key always names its item (an explicit name does not replace it).
    """
    if isinstance(key, GetAttrKey):
        child = getattr(parent, key.name)
        if key.name in transparent_fields(type(parent)) or (
            is_module(parent) and is_transparent(parent)
        ):
            return None, child, False
        return key.name, child, False
    if isinstance(key, DictKey):
        return str(key.key), parent[key.key], True
    if isinstance(key, SequenceKey):
        return str(key.idx), parent[key.idx], False
    return str(getattr(key, "key", key)), None, False


def path_segments(root: Any, path: tuple) -> tuple[list[str], str | None, bool]:
    """Segments of the containers along `path`, the default last segment, and whether
    that last segment is a dict key (which an explicit name does not replace)."""
    segs: list[str] = []
    obj = root
    last: str | None = None
    by_key = False
    for i, key in enumerate(path):
        seg, child, by_key = _key_segment(obj, key) if obj is not None else (str(key), None, False)
        if i == len(path) - 1:
            last = seg
            break
        if child is not None and is_module(child) and not by_key and child.name is not None:
            seg = child.name
        if seg is not None and seg != "":
            segs.append(seg)
        obj = child
    return segs, last, by_key


def join(segs: tuple[str, ...] | list[str], last: str | None) -> str:
    parts = [*segs, last] if last else list(segs)
    return SEP.join(parts)


class ParamIndex:
    """Flattened view of a module: parameter leaves, their positions and names."""

    __slots__ = ("by_key", "lasts", "leaves", "names", "positions", "prefixes", "treedef")

    def __init__(self, tree: Any):
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_parameter)
        cached = _CACHE.get(treedef)
        if cached is None:
            paths, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_parameter)
            positions, prefixes, lasts, by_key = [], [], [], []
            for i, (path, leaf) in enumerate(paths):
                if isinstance(leaf, Parameter):
                    segs, last, keyed = path_segments(tree, path)
                    positions.append(i)
                    prefixes.append(tuple(segs))
                    lasts.append(last)
                    by_key.append(keyed)
            if len(_CACHE) > 512:
                _CACHE.clear()
            cached = _CACHE[treedef] = (positions, prefixes, lasts, by_key)
        self.leaves = leaves
        self.treedef = treedef
        self.positions, self.prefixes, self.lasts, self.by_key = cached
        names = []
        for pos, pre, last, keyed in zip(
            self.positions, self.prefixes, self.lasts, self.by_key, strict=True
        ):
            own = leaves[pos].metadata.name
            names.append(join(pre, own if isinstance(own, str) and not keyed else last))
        self.names = names
        if len(set(names)) != len(names):
            dup = sorted(n for n, c in Counter(names).items() if c > 1)
            raise ConfigError(
                f"duplicate parameter names {dup}; give the parameters distinct names"
            )

    def params(self) -> list[Parameter]:
        return [self.leaves[p] for p in self.positions]

    def flat_names(self, k: int) -> list[str]:
        """Flat names of the k-th parameter."""
        p = self.leaves[self.positions[k]]
        if p.shape == ():
            return [self.names[k]]
        own = p.metadata.name
        if isinstance(own, tuple) and not self.by_key[k]:
            return [join(self.prefixes[k], n) for n in flat_names_of(own, p.size)]
        return flat_names_of(self.names[k], p.size, SEP)

    def rebuild(self, new_params: dict[int, Parameter]) -> Any:
        """Unflatten with the k-th parameters replaced by `new_params[k]`."""
        leaves = list(self.leaves)
        for k, p in new_params.items():
            leaves[self.positions[k]] = p
        return self.treedef.unflatten(leaves)


def unknown_names_error(
    unknown: list[str], known: list[str], what: str = "parameter"
) -> ConfigError:
    hints = []
    for u in unknown[:10]:
        m = close_matches(u, known)
        hints.append(f"{u!r}" + (f" (did you mean {', '.join(map(repr, m))}?)" if m else ""))
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    shown = f"{known[:20]}" + (f" ... ({len(known)} in all)" if len(known) > 20 else "")
    return ConfigError(f"unknown {what} name(s): {', '.join(hints)}{more}; known: {shown}")


def named_submodules(root: Any) -> list[tuple[str, tuple, Any]]:
    """Depth-first ``(name, path, module)`` for every nested parax Module (root excluded)."""
    out: list[tuple[str, tuple, Any]] = []

    def visit(mod: Any, prefix: list[str], path: tuple) -> None:
        flat, _ = jax.tree_util.tree_flatten_with_path(
            mod, is_leaf=lambda x: x is not mod and (is_module(x) or is_parameter(x))
        )
        for sub_path, leaf in flat:
            if not is_module(leaf):
                continue
            segs, last, by_key = path_segments(mod, sub_path)
            if not by_key and leaf.name is not None:
                last = leaf.name
            full = [*prefix, *segs] + ([last] if last else [])
            out.append((SEP.join(full), path + tuple(sub_path), leaf))
            visit(leaf, full, path + tuple(sub_path))

    visit(root, [], ())
    return out
