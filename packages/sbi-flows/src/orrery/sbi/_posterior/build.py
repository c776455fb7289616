"""Initialise a network without compiling it: its jaxpr evaluated on the host.

Built eagerly, every layer's random initialisation (and every small array op
in the flow constructors) compiles its own XLA program: on a CPU that is
seconds of compilation before the first epoch. Compiled as one program it still
cost 1.6-2.5 s of XLA (27 rolled threefry loops, one per random draw). So
`compiled_build` traces the constructor to a jaxpr once per architecture
(tracing compiles nothing) and evaluates it with NumPy (`_host_eval`): threefry
bit for bit, integer, shape and IEEE float ops exactly as XLA runs them op by op.
Transcendentals (the affine transformer's template, BNAF weight norms, normal
draws) and float sums run as one-op XLA programs, tiny and compiled once per
process. The recipe's flows (spline, spline-affine, affine, autoregressive with
the linear start) and its conv1d / mlp spectrum encoders come out bit-identical
to the compiled build, closure cells included, so fits are unchanged. Where XLA
rewrites float expressions across a whole program (the patch encoder's
``0.02 * normal`` positions, the BNAF's weight norms) the two differ by a few
ULP, as the eager build differs from both (a fused multiply-add in the eager
uniform draws); integers (permutations) are always identical. The jaxpr is
cached: a second fit of the architecture, any seed, neither traces nor compiles.

Caveats: only JAX's default PRNG (threefry, ``jax_threefry_partitionable`` on)
and a known set of primitives are interpreted; anything else (another PRNG, a
loop, a gather, integer division by zero, ...) raises `_host_eval.Unsupported`,
and the build is then compiled as one XLA program, as before (compiled without
the backend's optimisation passes: it runs once per fit; the host evaluation
reproduces exactly that program's unfused float rounding).

One wrinkle: flowjax stores *closures* over arrays as static fields (the
ravelled transformer template of ``Coupling`` and ``MaskedAutoregressive``).
Traced, those cells hold tracers. Their values are extra outputs of the traced
function and are written back into the cells after each build; should any
tracer remain where it cannot be repaired, it falls back to the eager build.
As with a compiled program, builds of one architecture share those static
closures (their values, the transformers' initial templates, do not depend on
the key).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np
from jax.core import Tracer

from .._xla import compiler_options
from . import _host_eval

__all__ = ["compiled_build"]

T = TypeVar("T")

_CACHE_SIZE = 32
#: The build runs once: compile time matters, run time does not.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_BUILDERS: dict[Hashable, _Builder] = {}


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
    """``make(key)``, evaluated on the host from its jaxpr, cached under ``cache_key``.

    The first build of an architecture traces ``make`` to a jaxpr (no XLA compile)
    and evaluates it with NumPy (`_host_eval`); later builds, with any key, evaluate
    the cached jaxpr again. Should the jaxpr need what the host interpreter does not
    reproduce exactly, the build is compiled as one XLA program instead (also cached).

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
        entry = _Builder()
    entry.maker[0] = make
    try:
        out = entry.host(key)
        if out is None:
            out = entry.compiled(key)
    except _Unrepairable:
        return make(key)
    finally:
        entry.maker[0] = None
    if _leaked(out):  # defensive: every holder was repaired
        _BUILDERS.pop(cache_key, None)
        return make(key)
    if cache_key not in _BUILDERS:
        if len(_BUILDERS) >= _CACHE_SIZE:
            _BUILDERS.pop(next(iter(_BUILDERS)))
        _BUILDERS[cache_key] = entry
    return out


class _Builder:
    """One architecture's build: its jaxpr for the host, else its compiled program."""

    def __init__(self) -> None:
        #: closure cells that held tracers in the traced output, in output order
        self.cells: list = []
        # `make` is handed in per call rather than captured: a cached build must not
        # keep alive whatever object `make` is bound to (a whole posterior).
        self.maker: list = [None]
        #: per ``jax_enable_x64``: (jaxpr, output treedef, static output), or None
        #: once the host interpreter refused this architecture
        self.plans: dict[bool, tuple[Any, Any, Any] | None] = {}
        self.program: Any = None

    def traced(self, k: jax.Array) -> tuple[Any, list]:
        """``make(k)`` and the values of the closure cells that hold tracers."""
        out = self.maker[0](k)
        self.cells.clear()
        unrepairable: list = []

        def record(cell, tracer):
            (self.cells if cell is not None else unrepairable).append(cell)

        _walk(out, set(), record)
        if unrepairable:
            raise _Unrepairable
        return out, [cell.cell_contents for cell in self.cells]

    def host(self, key: jax.Array) -> Any:
        """The build evaluated with NumPy from its jaxpr; None where it cannot be."""
        if not _is_threefry_key(key):
            return None
        x64 = bool(jax.config.read("jax_enable_x64"))
        if x64 not in self.plans:
            jaxpr, struct, static = eqx.filter_make_jaxpr(self.traced)(key)
            self.plans[x64] = (jaxpr, jax.tree.structure(struct), static)
        plan = self.plans[x64]
        if plan is None:
            return None
        jaxpr, treedef, static = plan
        try:
            data = [np.asarray(jax.random.key_data(key))]
            leaves = _host_eval.evaluate(jaxpr, data, {**compiler_options(), **_COMPILER_OPTIONS})
        except _host_eval.Unsupported:
            self.plans[x64] = None
            return None
        dynamic = jax.tree.unflatten(treedef, [jax.device_put(leaf) for leaf in leaves])
        out, values = eqx.combine(dynamic, static)
        self._repair(values)
        return out

    def compiled(self, key: jax.Array) -> Any:
        """The build as one XLA program, compiled on first use."""
        if self.program is None:
            lowered = eqx.filter_jit(self.traced).lower(key)
            options = {**compiler_options(), **_COMPILER_OPTIONS}
            self.program = lowered.compile(compiler_options=options)
        out, values = self.program(key)
        self._repair(values)
        return out

    def _repair(self, values: list) -> None:
        for cell, value in zip(self.cells, values, strict=True):
            cell.cell_contents = value


def _is_threefry_key(key: Any) -> bool:
    """A typed key array of JAX's default threefry PRNG (what `_host_eval` reproduces)."""
    try:
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        return typed and str(jax.random.key_impl(key)) == "threefry2x32"
    except (AttributeError, TypeError):
        return False


class _Unrepairable(Exception):
    """A tracer leaked into static data outside a closure cell."""
