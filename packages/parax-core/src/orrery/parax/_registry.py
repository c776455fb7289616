"""The allow-list of classes and functions that `orrery.parax.load` may rebuild.

Loading never imports a module or looks up a name chosen by the file. A saved
object refers to its class or function by a string ``"module:qualname"``; that
string is looked up in a table filled only from code:

- the classes defined in `orrery.parax` itself and in distreqx (registered by
  walking modules that are already imported; nothing is imported for it);
- the public functions of a fixed set of already-imported numeric modules
  (``jax.numpy``, ``numpy``, ``math``, ``operator``, ``jax.nn``,
  ``jax.scipy.special``, ``jax.lax``), apart from file and process helpers;
- what the user registers with `register_loadable`.

A string that is not in the table is refused before anything is resolved.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import sys
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from orrery.interface import ConfigError

__all__ = ["register_loadable"]

T = TypeVar("T")

_PACKAGES = ("orrery.parax", "distreqx")
# Fixed in code: the module objects are those imported above, never looked up by name.
_FUNCTION_MODULES: dict[str, Any] = {
    "jax.numpy": jnp,
    "numpy": np,
    "math": math,
    "operator": operator,
    "jax.nn": jax.nn,
    "jax.scipy.special": jax.scipy.special,
    "jax.lax": jax.lax,
}
# Public names of those modules that touch files, processes or global state.
_FUNCTION_DENY = frozenset(
    {
        "load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt",
        "fromfile", "fromregex", "frombuffer", "fromstring", "memmap", "DataSource",
        "info", "source", "lookfor", "show_config", "show_runtime", "get_include",
        "setbufsize", "seterr", "seterrcall", "set_printoptions", "printoptions",
        "set_string_function", "deprecate", "test", "call", "attrgetter", "methodcaller",
        "itemgetter",
    }
)  # fmt: skip
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

_user: dict[str, Any] = {}
_package_classes: dict[str, type] = {}
_functions: dict[str, Any] | None = None


def ref_of(obj: Any) -> str:
    """The ``"module:qualname"`` string an object is saved under."""
    return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"


def _in_packages(module: str) -> bool:
    """True for `orrery.parax`, `distreqx` and their submodules (not `distreqx_x`)."""
    return module in _PACKAGES or module.startswith(tuple(f"{p}." for p in _PACKAGES))


def _scan_package_classes() -> None:
    """Register the dataclasses defined in already-imported parax and distreqx modules."""
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not _in_packages(mod_name):
            continue
        for obj in list(vars(mod).values()):
            if (
                isinstance(obj, type)
                and obj.__module__ == mod_name
                and dataclasses.is_dataclass(obj)
                and "<" not in obj.__qualname__
            ):
                _package_classes.setdefault(ref_of(obj), obj)


def _function_table() -> dict[str, Any]:
    global _functions
    if _functions is None:
        table: dict[str, Any] = {}
        for mod_name, mod in _FUNCTION_MODULES.items():
            for name in dir(mod):
                if not _IDENT.match(name) or name in _FUNCTION_DENY:
                    continue
                try:
                    obj = getattr(mod, name)
                except Exception:  # deprecated names may raise on access
                    continue
                if callable(obj) and not isinstance(obj, type):
                    table[f"{mod_name}:{name}"] = obj
        _functions = table
    return _functions


def lookup_class(ref: str) -> type | None:
    """The registered class for `ref`, or None. Resolves nothing that is not listed."""
    if not isinstance(ref, str):
        return None
    if ref in _user:
        obj = _user[ref]
        return obj if isinstance(obj, type) else None
    if _in_packages(ref.partition(":")[0]):
        if ref not in _package_classes:
            _scan_package_classes()
        return _package_classes.get(ref)
    return None


def lookup_function(ref: str) -> Any | None:
    """The registered function for `ref`, or None. Resolves nothing that is not listed."""
    if not isinstance(ref, str):
        return None
    obj = _user.get(ref)
    if obj is not None:
        return None if isinstance(obj, type) else obj
    return _function_table().get(ref)


def class_ref(cls: type) -> str | None:
    """The string `cls` is saved under, or None when it is not loadable."""
    ref = ref_of(cls)
    return ref if lookup_class(ref) is cls else None


def function_ref(fn: Any) -> str | None:
    """The string `fn` is saved under, or None when it is not loadable."""
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", None) or ""
    candidates = [ref_of(fn)] + [f"{m}:{name}" for m in _FUNCTION_MODULES]
    if mod.startswith("jax"):
        candidates.insert(1, f"jax.numpy:{name}")
    for ref in candidates:
        if lookup_function(ref) is fn:
            return ref
    return None


def register_loadable(obj: T) -> T:
    """Allow `orrery.parax.save` and `orrery.parax.load` to store and rebuild `obj`.

    Loading only rebuilds classes and functions on an allow-list: the classes of
    `orrery.parax` and distreqx, public numeric functions of ``jax.numpy``,
    ``numpy``, ``math``, ``operator``, ``jax.nn``, ``jax.scipy.special`` and
    ``jax.lax``, and what is registered here. Register your own
    `orrery.parax.Module` subclasses (and any function they hold) before saving
    and before loading them; the module that defines them must already be
    imported by your code, since `load` never imports anything. Usable as a
    class decorator.

    Args:
        obj: a module-level dataclass (e.g. a subclass of `orrery.parax.Module`) or a
            module-level function.

    Returns:
        `obj` itself.

    Raises:
        ConfigError: if `obj` is a local or anonymous object, a class that is not a
            dataclass, or not callable.

    Example:
        >>> import orrery.parax as px
        >>> @px.register_loadable
        ... class Line(px.Module):
        ...     slope: px.Parameter
        >>> Line.__name__
        'Line'
    """
    _check_loadable(obj)
    _user[ref_of(obj)] = obj
    return obj


def _check_loadable(obj: object) -> None:
    """Refuse what `load` could not rebuild by name: local objects, non-dataclass classes."""
    qual = getattr(obj, "__qualname__", None)
    mod = getattr(obj, "__module__", None)
    if not isinstance(qual, str) or not isinstance(mod, str) or "<" in qual:
        raise ConfigError(
            f"obj: expected a module-level class or function, got {obj!r} "
            "(local classes, lambdas and partials cannot be referred to by name)"
        )
    if isinstance(obj, type):
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(
                f"obj: {mod}.{qual} is not a dataclass (e.g. an orrery.parax.Module); "
                "only dataclasses can be rebuilt field by field"
            )
    elif not callable(obj):
        raise ConfigError(f"obj: expected a class or a function, got {type(obj).__name__}")
