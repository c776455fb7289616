"""Initialise a network as one compiled program instead of op by op.

Built eagerly, every layer's random initialisation (and every small array op
in the flow constructors) compiles its own XLA program: on a CPU that is
seconds of compilation before the first epoch. Traced under ``jit`` with the
key as the only input, it is one program, compiled once per architecture and
reused for every seed; the arrays equal the eager build's (up to XLA's fused
rounding, a few ULP, in places). The program runs once per fit, so it is
compiled without the backend's optimisation passes (a third of the compile
time; integer hashing and the few float ops give the same values).

One wrinkle: flowjax stores *closures* over arrays as static fields (the
ravelled transformer template of ``Coupling`` and ``MaskedAutoregressive``).
Built under ``jit`` those cells hold tracers. `compiled_build` returns
their values as extra outputs and writes them back into the cells; should any
tracer remain where it cannot be repaired, it falls back to the eager build.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import equinox as eqx
import jax
from jax.core import Tracer

from .._xla import compiler_options

__all__ = ["compiled_build"]

T = TypeVar("T")

_CACHE_SIZE = 32
#: The build runs once: compile time matters, run time does not.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_BUILDERS: dict[Hashable, list] = {}


def _walk(
    obj: Any,
    seen: set[int],
    on_tracer: Callable[[Any, Any], None],
    *,
    static: bool = False,
    cell: Any = None,
) -> None:
    """Find tracers held in static data of ``obj``; ``on_tracer(cell, tracer)`` for each.

    Arrays in a module's dynamic fields are the build's regular outputs and are
    skipped. ``cell`` is the closure cell that holds the tracer, or ``None`` when it
    sits somewhere a cell write cannot reach.
    """
    if isinstance(obj, Tracer):  # before `seen`: report every holder
        if static or cell is not None:
            on_tracer(cell, obj)
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.FunctionType):
        for c in obj.__closure__ or ():
            try:
                value = c.cell_contents
            except ValueError:  # an empty cell
                continue
            _walk(value, seen, on_tracer, static=True, cell=c)
    elif isinstance(obj, functools.partial):
        for value in (obj.func, *obj.args, *obj.keywords.values()):
            _walk(value, seen, on_tracer, static=True)
    elif isinstance(obj, eqx.Module):
        for field in dataclasses.fields(obj):
            is_static = static or bool(field.metadata.get("static", False))
            _walk(getattr(obj, field.name, None), seen, on_tracer, static=is_static)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _walk(value, seen, on_tracer, static=static)
    elif isinstance(obj, dict):
        for value in obj.values():
            _walk(value, seen, on_tracer, static=static)


def _leaked(tree: Any) -> bool:
    found: list = []
    _walk(tree, set(), lambda cell, tracer: found.append(tracer))
    return bool(found)


def compiled_build(make: Callable[[jax.Array], T], key: jax.Array, cache_key: Hashable) -> T:
    """``make(key)`` evaluated as one jitted program, cached under ``cache_key``.

    Args:
        make: builds a pytree (an equinox module) from a PRNG key; everything else it
            depends on must be captured by ``cache_key``.
        key: the PRNG key.
        cache_key: identifies the architecture; builds with equal keys share a program.

    Returns:
        The same pytree ``make(key)`` returns when run eagerly.
    """
    entry = _BUILDERS.get(cache_key)
    if entry is None:
        cells: list = []
        # `make` is handed in per call rather than captured: a cached program must not
        # keep alive whatever object `make` is bound to (a whole posterior).
        maker: list = [None]

        def traced(k):
            out = maker[0](k)
            cells.clear()
            unrepairable: list = []

            def record(cell, tracer):
                (cells if cell is not None else unrepairable).append(cell)

            _walk(out, set(), record)
            if unrepairable:
                raise _Unrepairable
            return out, [cell.cell_contents for cell in cells]

        entry = [eqx.filter_jit(traced), cells, maker]
    builder, cells, maker = entry
    maker[0] = make
    try:
        if not isinstance(builder, _Compiled):
            lowered = builder.lower(key)
            options = {**compiler_options(), **_COMPILER_OPTIONS}
            builder = entry[0] = _Compiled(lowered.compile(compiler_options=options))
        out, values = builder(key)
    except _Unrepairable:
        return make(key)
    finally:
        maker[0] = None
    for cell, value in zip(cells, values, strict=True):
        cell.cell_contents = value
    if _leaked(out):  # defensive: every holder was repaired above
        _BUILDERS.pop(cache_key, None)
        return make(key)
    if cache_key not in _BUILDERS:
        if len(_BUILDERS) >= _CACHE_SIZE:
            _BUILDERS.pop(next(iter(_BUILDERS)))
        _BUILDERS[cache_key] = entry
    return out


class _Compiled:
    """An ahead-of-time compiled build program."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def __call__(self, key: jax.Array) -> Any:
        return self.compiled(key)


class _Unrepairable(Exception):
    """A tracer leaked into static data outside a closure cell."""
