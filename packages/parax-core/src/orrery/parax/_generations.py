"""Guards for the three names parax 0.4 and parax 0.11 both define (issue 38).

`orrery.parax` keeps parax 0.4's meanings; parax 0.11's live in `orrery.parax.v011`.
Where a call can only be 0.11 code (a 0.11 variable handed to a 0.4 name, or `Fixed`
built inside `jax.grad` where the two differ in the gradient), it raises a `ConfigError`
naming the import to use, never giving the other generation's number.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
from jax.core import Tracer

from ._errors import ConfigTypeError

__all__ = ["V011_ONLY_NAMES", "refuse_under_differentiation", "refuse_v011_variable"]

#: Names parax 0.11 has and parax 0.4 has not: `orrery.parax.<name>` says where they are.
V011_ONLY_NAMES = frozenset(
    {
        "AbstractUnwrappable", "AbstractVariable", "AbstractWrappable", "Apply", "Bound",
        "Bounded", "Combine", "Constrain", "Constrained", "Derived", "Freeze", "Param",
        "Parameterize", "Probabilize", "Random", "Real", "Static", "Tagged", "Tie",
        "Transformed", "annotation", "as_fixed", "as_free", "as_opaque", "as_unwrapped",
        "as_variable", "bounds", "constants", "constraints", "filters", "is_annotated",
        "is_bijector", "is_bounded", "is_constant", "is_constrainable", "is_constrained",
        "is_constraint", "is_distribution", "is_probabilistic", "is_unwrappable",
        "is_variable", "is_wrappable", "probability", "remove", "replace", "tree_bounds",
        "tree_constrain", "tree_joint_distribution", "tree_replace", "unwrap", "unwrap_self",
        "variables", "wrap", "wrappers",
    }
)  # fmt: skip

_USE_V011 = "For parax 0.11 code use `import orrery.parax.v011 as parax`"
_AD_TRACERS = ("JVPTracer", "LinearizeTracer")


def _is_v011_object(x: Any) -> bool:
    # No import of v011 here: if it was never imported, x cannot be one of its objects.
    base = sys.modules.get("orrery.parax.v011._base")
    return base is not None and isinstance(x, base.AbstractUnwrappable)


def refuse_v011_variable(x: Any, name: str) -> None:
    """Raise if `x` is a parax 0.11 variable or wrapper handed to the 0.4 `name`."""
    if _is_v011_object(x):
        raise ConfigTypeError(
            f"{name}: got a parax 0.11 {type(x).__name__}; orrery.parax.{name} is parax 0.4's "
            f"(Parameter-based). {_USE_V011} (orrery.parax.v011.{name})"
        )


def _differentiated(leaf: Any) -> bool:
    t = leaf
    while isinstance(t, Tracer):
        if type(t).__name__ in _AD_TRACERS:
            return True
        t = getattr(t, "val", None)  # a BatchTracer around a differentiated value
    return False


def refuse_under_differentiation(value: Any, name: str) -> None:
    """Raise if `value` is being differentiated (inside `jax.grad`, `jax.jvp`, ...).

    parax 0.4's `Fixed(x)` lets the gradient through `x`; parax 0.11's stops it. Built
    inside a differentiated function the two give different numbers, so neither is
    guessed.
    """
    if any(_differentiated(leaf) for leaf in jax.tree.leaves(value)):
        raise ConfigTypeError(
            f"{name}: called on a value being differentiated. orrery.parax.{name} is parax "
            f"0.4's (a non-trainable Parameter whose value still passes gradients); parax 0.11's "
            f"stops gradients. {_USE_V011}; for a 0.4 parameter built inside a differentiated "
            f"function use `Parameter(x, fixed=True)`"
        )
