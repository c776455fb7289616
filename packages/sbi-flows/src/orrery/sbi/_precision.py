"""The numeric precision of the posterior: float32, whatever ``jax_enable_x64`` says.

Flows, encoders and the trainer compute in float32 (the flows' numerics and the
training defaults are tuned for it, and it halves memory). When a program has
turned on ``jax_enable_x64`` (for another library's sake), every public entry
point of the posterior runs inside ``float32_scope()``, so the posterior trains,
samples and scores exactly as it does without x64; results come back as float32
NumPy arrays.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])

#: The dtype every posterior computation uses.
COMPUTE_DTYPE = "float32"


@contextlib.contextmanager
def float32_scope() -> Iterator[None]:
    """Run the enclosed JAX code with 64-bit types disabled (a no-op without x64)."""
    if not jax.config.read("jax_enable_x64"):
        yield
        return
    scope = getattr(jax, "enable_x64", None)
    if scope is None:  # older JAX
        # imported by name: the symbol is gone from the JAX the checker sees
        scope_off = importlib.import_module("jax.experimental").disable_x64
        with scope_off():
            yield
        return
    with scope(False):
        yield


def in_float32(method: F) -> F:
    """Decorator: run ``method`` inside `float32_scope`."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with float32_scope():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
