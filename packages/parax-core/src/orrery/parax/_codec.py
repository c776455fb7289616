"""JSON description of pytrees of parax objects (the body of `orrery.parax.save`).

Encoding refuses anything that cannot be stored without pickling. Decoding checks
every node of the description (its type tag, its keys and their types) and looks
class and function references up in the allow-list of `_registry` before anything
is resolved: nothing named by the file is ever imported.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ArtifactError

from ._registry import class_ref, function_ref, lookup_class, lookup_function
from .metadata import Info, NameList

try:  # equinox's placeholder for unset wrapper attributes (kept for exact pytree structure)
    from equinox._module._flatten import MISSING as _EQX_MISSING
except ImportError:  # pragma: no cover - other equinox versions
    _EQX_MISSING = object()

_SCALARS = (type(None), bool, int, float, str)
_ARRAY_KINDS = "biufc"


def _refuse_class(cls: type, where: str) -> ArtifactError:
    return ArtifactError(
        f"{where}: cannot save {cls.__module__}.{cls.__qualname__}; only orrery.parax "
        "classes, distreqx objects and classes registered with "
        "orrery.parax.register_loadable (module-level dataclasses) can be stored"
    )


class Encoder:
    """Turns a pytree into a JSON-safe description plus named arrays."""

    def __init__(self, inline: bool):
        self.inline = inline
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, x: Any, is_jax: bool) -> dict:
        arr = np.asarray(x)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise ArtifactError(f"cannot save an array of dtype {arr.dtype} (no pickling)")
        if self.inline:
            return {"__t": "array", "v": arr.tolist(), "dtype": str(arr.dtype), "jax": is_jax}
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        return {
            "__t": "array",
            "k": key,
            "jax": is_jax,
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
        }

    def enc(self, obj: Any, where: str) -> Any:
        if isinstance(obj, np.generic):
            if obj.dtype.kind not in _ARRAY_KINDS:
                raise ArtifactError(f"{where}: cannot save a NumPy scalar of dtype {obj.dtype}")
            return {"__t": "npscalar", "dtype": str(obj.dtype), "v": obj.item()}
        if obj is None or isinstance(obj, (bool, int, str, float)):
            return obj
        if isinstance(obj, jax.Array):
            if jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
                raise ArtifactError(f"{where}: PRNG key arrays cannot be saved; save a seed")
            return self.array(obj, True)
        if isinstance(obj, np.ndarray):
            return self.array(obj, False)
        if isinstance(obj, np.dtype):
            return {"__t": "dtype", "v": str(obj)}
        if isinstance(obj, Info):
            return {"__t": "info", "items": self.items(obj, where)}
        if type(obj) is dict:
            return {"__t": "dict", "items": self.items(obj, where)}
        if type(obj) is NameList:
            return {"__t": "names", "items": [self.enc(v, where) for v in obj]}
        if type(obj) in (list, tuple):
            return {
                "__t": type(obj).__name__,
                "items": [self.enc(v, f"{where}[{i}]") for i, v in enumerate(obj)],
            }
        if isinstance(obj, slice):
            parts = (obj.start, obj.stop, obj.step)
            return {"__t": "slice", "v": [self.enc(v, where) for v in parts]}
        if obj is Ellipsis:
            return {"__t": "ellipsis"}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self.module(obj, where)
        if callable(obj) and not isinstance(obj, type):
            ref = function_ref(obj)
            if ref is None:
                mod = getattr(obj, "__module__", None)
                qual = getattr(obj, "__qualname__", None) or type(obj).__name__
                raise ArtifactError(
                    f"{where}: cannot save function {mod}.{qual}; only public functions of "
                    "jax.numpy, numpy, math, operator, jax.nn, jax.scipy.special, jax.lax and "
                    "functions registered with orrery.parax.register_loadable can be stored "
                    "(no pickling)"
                )
            return {"__t": "func", "ref": ref}
        raise ArtifactError(
            f"{where}: cannot save an object of type {type(obj).__module__}."
            f"{type(obj).__qualname__} (no pickling)"
        )

    def module(self, obj: Any, where: str) -> dict:
        cls = type(obj)
        ref = class_ref(cls)
        if ref is None:
            raise _refuse_class(cls, where)
        fields = {}
        for f in dataclasses.fields(obj):
            if not f.metadata.get("parax_save", True):
                continue
            fields[f.name] = self.enc(getattr(obj, f.name), f"{where}.{f.name}")
        node = {"__t": "module", "cls": ref, "fields": fields}
        names = {f.name for f in dataclasses.fields(obj)}
        # Plain bookkeeping attributes outside the fields (e.g. ihoop's initialisation
        # flag on distreqx objects) are part of the pytree structure: keep them.
        extra = {}
        for k, v in vars(obj).items():
            if k in names:
                continue
            if v is _EQX_MISSING:
                extra[k] = {"__t": "eqx_missing"}
            elif isinstance(v, _SCALARS):
                extra[k] = v
        if extra:
            node["attrs"] = extra
        return node

    def items(self, d: dict, where: str) -> list:
        return [[self.enc(k, where), self.enc(v, f"{where}[{k!r}]")] for k, v in d.items()]


def _need(node: dict, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in node:
        raise ArtifactError(f"{where}: entry lacks {key!r}")
    value = node[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise ArtifactError(f"{where}: {key!r} has type {type(value).__name__}, unexpected here")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_dtype(name: str, where: str) -> np.dtype:
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise ArtifactError(f"{where}: unknown dtype {name!r}") from None
    if dtype.kind not in _ARRAY_KINDS:
        raise ArtifactError(f"{where}: dtype {dtype} is not numeric")
    return dtype


def _to_jax(arr: np.ndarray, where: str) -> jax.Array:
    out = jnp.asarray(arr)
    if out.dtype != arr.dtype:
        warnings.warn(
            f"{where}: saved as {arr.dtype} but loaded as {out.dtype} because the current "
            "JAX configuration cannot represent it; enable it with "
            "jax.config.update('jax_enable_x64', True) before loading to keep the saved dtype",
            UserWarning,
            stacklevel=4,
        )
    return out


class Decoder:
    """Rebuilds a pytree from a description written by `Encoder`.

    Args:
        get_array: returns the named array, checked for dtype kind and shape, or raises
            `ArtifactError` (None for descriptions with inline arrays only).
    """

    def __init__(self, get_array: Callable[[str, str, tuple[int, ...]], np.ndarray] | None):
        self.get_array = get_array

    def dec(self, node: Any, where: str) -> Any:
        if isinstance(node, _SCALARS):
            return node
        if not isinstance(node, dict):
            raise ArtifactError(f"{where}: unexpected entry of type {type(node).__name__}")
        t = _need(node, "__t", str, where)
        if t == "array":
            return self.array(node, where)
        if t == "npscalar":
            dtype = _check_dtype(_need(node, "dtype", str, where), where)
            return dtype.type(_need(node, "v", (bool, int, float), where))
        if t == "dtype":
            return _check_dtype(_need(node, "v", str, where), where)
        if t in ("dict", "info"):
            d = {}
            for pair in _need(node, "items", list, where):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ArtifactError(f"{where}: dict items must be [key, value] pairs")
                key = self.dec(pair[0], where)
                try:
                    d[key] = self.dec(pair[1], f"{where}[{key!r}]")
                except TypeError:
                    raise ArtifactError(f"{where}: unhashable dict key") from None
            return Info(d) if t == "info" else d
        if t == "names":
            raw = _need(node, "items", list, where)
            if not all(isinstance(v, str) for v in raw):
                raise ArtifactError(f"{where}: names must be strings")
            return NameList(raw)
        if t in ("list", "tuple"):
            raw = _need(node, "items", list, where)
            items = [self.dec(v, f"{where}[{i}]") for i, v in enumerate(raw)]
            return tuple(items) if t == "tuple" else items
        if t == "slice":
            parts = _need(node, "v", list, where)
            if len(parts) != 3 or not all(isinstance(p, (type(None), int)) for p in parts):
                raise ArtifactError(f"{where}: a slice needs [start, stop, step] ints or null")
            return slice(*parts)
        if t == "ellipsis":
            return Ellipsis
        if t == "func":
            ref = _need(node, "ref", str, where)
            fn = lookup_function(ref)
            if fn is None:
                raise ArtifactError(
                    f"{where}: refusing to load function {ref!r}: it is not on the allow-list "
                    "(register it with orrery.parax.register_loadable)"
                )
            return fn
        if t == "module":
            return self.module(node, where)
        raise ArtifactError(f"{where}: unknown entry type {t!r}")

    def array(self, node: dict, where: str) -> Any:
        is_jax = _need(node, "jax", bool, where)
        if "k" in node:
            if self.get_array is None:
                raise ArtifactError(f"{where}: array reference outside an artifact")
            key = _need(node, "k", str, where)
            dtype = _check_dtype(_need(node, "dtype", str, where), where)
            shape = _need(node, "shape", list, where)
            if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
                raise ArtifactError(f"{where}: bad shape {shape!r}")
            arr = self.get_array(key, dtype.kind, tuple(shape))
            if arr.dtype != dtype:
                raise ArtifactError(
                    f"{where}: array {key!r} has dtype {arr.dtype}, metadata says {dtype}"
                )
        else:
            dtype = _check_dtype(_need(node, "dtype", str, where), where)
            try:
                arr = np.asarray(_need(node, "v", (list, bool, int, float), where), dtype=dtype)
            except (TypeError, ValueError) as e:
                raise ArtifactError(f"{where}: bad inline array ({e})") from None
        return _to_jax(arr, where) if is_jax else np.array(arr)

    def module(self, node: dict, where: str) -> Any:
        ref = _need(node, "cls", str, where)
        cls = lookup_class(ref)  # the allow-list check comes before anything is resolved
        if cls is None:
            raise ArtifactError(
                f"{where}: refusing to rebuild {ref!r}: it is not on the allow-list "
                "(orrery.parax and distreqx classes, and classes registered with "
                "orrery.parax.register_loadable)"
            )
        saved = _need(node, "fields", dict, where)
        attrs = node.get("attrs", {})
        if not isinstance(attrs, dict):
            raise ArtifactError(f"{where}: 'attrs' must be a mapping")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(saved) - names)
        if extra:
            raise ArtifactError(f"{where}: {ref} has no field(s) {extra}; the class changed")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in saved:
                values[f.name] = self.dec(saved[f.name], f"{where}.{f.name}")
            elif not f.metadata.get("parax_save", True):
                if f.default is not dataclasses.MISSING:
                    values[f.name] = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    values[f.name] = f.default_factory()
                else:
                    values[f.name] = None
            else:
                raise ArtifactError(f"{where}: {ref} field {f.name!r} is missing")
        extras: dict[str, Any] = {}
        for k, v in attrs.items():
            if isinstance(v, dict) and v.get("__t") == "eqx_missing":
                v = _EQX_MISSING
            elif k in names or not isinstance(v, _SCALARS):
                raise ArtifactError(f"{where}: bad attribute {k!r} for {ref}")
            extras[k] = v
        obj = object.__new__(cls)
        for k, v in {**values, **extras}.items():
            object.__setattr__(obj, k, v)
        return obj


def describe_plain(obj: Any) -> Any:
    """JSON-safe description of `obj` with arrays inlined (used by `Parameter.to_json`)."""
    return Encoder(inline=True).enc(obj, type(obj).__name__)


def rebuild_plain(node: Any) -> Any:
    """Inverse of `describe_plain`."""
    return Decoder(None).dec(node, "json")
