"""`save` / `load` for pytrees of parax modules, parameters, arrays, lists and dicts.

The format is an `orrery.interface` artifact (``kind="parax.tree"``): a JSON description
of the tree (class references, static fields, distreqx objects by their fields) plus
an ``.npz`` of arrays. Nothing is pickled. Loading rebuilds only `orrery.parax` classes,
distreqx distributions/bijectors and user subclasses of `orrery.parax.Module`
(operators included); a handful of library functions (from ``jax``, ``numpy``, ``math``,
``operator``) may be referenced by name. Anything else raises `ArtifactError` naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import io as _io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ArtifactError, load_artifact, save_artifact

from .metadata import Info

__all__ = ["load", "save"]

try:  # equinox's placeholder for unset wrapper attributes (kept for exact pytree structure)
    from equinox._module._flatten import MISSING as _EQX_MISSING
except ImportError:  # pragma: no cover - other equinox versions
    _EQX_MISSING = object()

KIND = "parax.tree"
_CLASS_PREFIXES = ("orrery.parax", "distreqx")
_FUNC_PREFIXES = ("jax", "numpy", "math", "operator", "orrery.parax", "distreqx")


def _class_allowed(cls: type) -> bool:
    if cls.__module__.split(".")[0] == "distreqx" or cls.__module__.startswith("orrery.parax"):
        return True
    from .module import Module

    return isinstance(cls, type) and issubclass(cls, Module)


def _ref(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _resolve(ref: str, where: str) -> Any:
    mod_name, _, qual = ref.partition(":")
    if not mod_name or not qual or "<" in qual:
        raise ArtifactError(f"{where}: malformed reference {ref!r}")
    try:
        obj = importlib.import_module(mod_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ArtifactError(f"{where}: cannot resolve {ref!r} ({e})") from None
    return obj


def _func_ref(fn: Any, where: str) -> str:
    mod = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "")
    name = getattr(fn, "__name__", qual)
    ok_prefix = mod.split(".")[0] in {p.split(".")[0] for p in _FUNC_PREFIXES}
    if ok_prefix and "<" not in qual:
        for candidate in (f"{mod}:{qual}", f"jax.numpy:{name}", f"numpy:{name}"):
            try:
                if _resolve(candidate, where) is fn:
                    return candidate
            except ArtifactError:
                continue
    raise ArtifactError(
        f"{where}: cannot save function {mod}.{qual}; only importable functions from "
        f"{', '.join(_FUNC_PREFIXES)} can be stored (no pickling)"
    )


class _Encoder:
    def __init__(self, inline: bool):
        self.inline = inline
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, x: Any, is_jax: bool) -> dict:
        arr = np.asarray(x)
        if self.inline:
            return {"__t": "array", "v": arr.tolist(), "dtype": str(arr.dtype), "jax": is_jax}
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        return {"__t": "array", "k": key, "jax": is_jax}

    def enc(self, obj: Any, where: str) -> Any:
        if isinstance(obj, np.generic):
            return {"__t": "npscalar", "dtype": str(obj.dtype), "v": obj.item()}
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
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
        if type(obj) in (list, tuple):
            return {
                "__t": type(obj).__name__,
                "items": [self.enc(v, f"{where}[{i}]") for i, v in enumerate(obj)],
            }
        if isinstance(obj, slice):
            return {"__t": "slice", "v": [self.enc(obj.start, where), obj.stop, obj.step]}
        if obj is Ellipsis:
            return {"__t": "ellipsis"}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            cls = type(obj)
            if not _class_allowed(cls) or "<locals>" in cls.__qualname__:
                raise ArtifactError(
                    f"{where}: cannot save {cls.__module__}.{cls.__qualname__}; only "
                    "orrery.parax classes, distreqx objects and module-level subclasses of "
                    "orrery.parax.Module/Operator can be stored"
                )
            fields = {}
            for f in dataclasses.fields(obj):
                if not f.metadata.get("parax_save", True):
                    continue
                fields[f.name] = self.enc(getattr(obj, f.name), f"{where}.{f.name}")
            node = {"__t": "module", "cls": _ref(cls), "fields": fields}
            names = {f.name for f in dataclasses.fields(obj)}
            # Plain bookkeeping attributes outside the fields (e.g. ihoop's initialisation
            # flag on distreqx objects) are part of the pytree structure: keep them.
            extra = {}
            for k, v in vars(obj).items():
                if k in names:
                    continue
                if v is _EQX_MISSING:
                    extra[k] = {"__t": "eqx_missing"}
                elif v is None or isinstance(v, (bool, int, float, str)):
                    extra[k] = v
            if extra:
                node["attrs"] = extra
            return node
        if callable(obj) and not isinstance(obj, type):
            return {"__t": "func", "ref": _func_ref(obj, where)}
        raise ArtifactError(
            f"{where}: cannot save an object of type {type(obj).__module__}."
            f"{type(obj).__qualname__} (no pickling)"
        )

    def items(self, d: dict, where: str) -> list:
        return [[self.enc(k, where), self.enc(v, f"{where}[{k!r}]")] for k, v in d.items()]


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def dec(self, node: Any, where: str) -> Any:
        if not isinstance(node, dict):
            return node
        t = node.get("__t")
        if t == "array":
            if "k" in node:
                if node["k"] not in self.arrays:
                    raise ArtifactError(f"{where}: array {node['k']!r} missing from arrays.npz")
                arr = self.arrays[node["k"]]
            else:
                arr = np.asarray(node["v"], dtype=node["dtype"])
            return jnp.asarray(arr) if node.get("jax", True) else np.array(arr)
        if t == "npscalar":
            return np.dtype(node["dtype"]).type(node["v"])
        if t == "dtype":
            return np.dtype(node["v"])
        if t in ("dict", "info"):
            d = {self.dec(k, where): self.dec(v, f"{where}[{k!r}]") for k, v in node["items"]}
            return Info(d) if t == "info" else d
        if t in ("list", "tuple"):
            items = [self.dec(v, f"{where}[{i}]") for i, v in enumerate(node["items"])]
            return tuple(items) if t == "tuple" else items
        if t == "slice":
            return slice(*node["v"])
        if t == "ellipsis":
            return Ellipsis
        if t == "func":
            ref = node["ref"]
            if ref.split(":")[0].split(".")[0] not in {p.split(".")[0] for p in _FUNC_PREFIXES}:
                raise ArtifactError(f"{where}: refusing to load function {ref!r}")
            return _resolve(ref, where)
        if t == "module":
            return self.module(node, where)
        raise ArtifactError(f"{where}: unknown node type {t!r}")

    def module(self, node: dict, where: str) -> Any:
        ref = node["cls"]
        mod = ref.split(":")[0]
        if not (mod.startswith("orrery.parax") or mod.split(".")[0] == "distreqx"):
            # Importing runs module code; only user modules that define parax subclasses
            # get here, and the class is checked right after.
            pass
        cls = _resolve(ref, where)
        if not isinstance(cls, type) or not _class_allowed(cls):
            raise ArtifactError(
                f"{where}: refusing to rebuild {ref!r}; only orrery.parax classes, distreqx "
                "objects and subclasses of orrery.parax.Module/Operator are loaded"
            )
        saved = node["fields"]
        obj = object.__new__(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(saved) - names)
        if extra:
            raise ArtifactError(f"{where}: {ref} has no field(s) {extra}; the class changed")
        for f in dataclasses.fields(cls):
            if f.name in saved:
                value = self.dec(saved[f.name], f"{where}.{f.name}")
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None
            object.__setattr__(obj, f.name, value)
        for k, v in node.get("attrs", {}).items():
            if isinstance(v, dict) and v.get("__t") == "eqx_missing":
                v = _EQX_MISSING
            elif k in names or not isinstance(v, (type(None), bool, int, float, str)):
                raise ArtifactError(f"{where}: bad attribute {k!r} for {ref}")
            object.__setattr__(obj, k, v)
        return obj


def _producer() -> dict[str, str]:
    from . import __version__

    return {"distribution": "parax-core", "version": __version__}


def describe_plain(obj: Any) -> Any:
    """JSON-safe description of `obj` with arrays inlined (used by `Parameter.to_json`)."""
    return _Encoder(inline=True).enc(obj, type(obj).__name__)


def rebuild_plain(node: Any) -> Any:
    """Inverse of `describe_plain`."""
    return _Decoder({}).dec(node, "json")


def save(target: str | os.PathLike | BinaryIO, tree: Any) -> None:
    """Save a pytree of parax modules, parameters, arrays, lists and dicts.

    Args:
        target: a directory path (written atomically) or a writable binary file object
            (receives a zip of the artifact directory).
        tree: the pytree to save.

    Raises:
        ArtifactError: naming the first object that cannot be stored without pickling.
    """
    enc = _Encoder(inline=False)
    config = {"tree": enc.enc(tree, "tree")}
    if isinstance(target, (str, os.PathLike)):
        save_artifact(target, kind=KIND, config=config, arrays=enc.arrays, producer=_producer())
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        save_artifact(path, kind=KIND, config=config, arrays=enc.arrays, producer=_producer())
        buf = _io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(path.iterdir()):
                zf.write(p, p.name)
        target.write(buf.getvalue())


def load(source: str | os.PathLike | BinaryIO) -> Any:
    """Load a pytree written by `save` (exact round trip).

    Raises:
        ArtifactError: if the artifact is not a parax tree or names a class/function
            that may not be rebuilt.
    """
    if isinstance(source, (str, os.PathLike)):
        art = load_artifact(source, kind=KIND)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with zipfile.ZipFile(_io.BytesIO(source.read())) as zf:
                    names = zf.namelist()
                    if any("/" in n or n.startswith(".") for n in names):
                        raise ArtifactError("source: unexpected entries in the archive")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as e:
                raise ArtifactError(f"source: not a parax archive ({e})") from None
            art = load_artifact(tmp, kind=KIND)
    return _Decoder(dict(art.arrays)).dec(art.config["tree"], "tree")
