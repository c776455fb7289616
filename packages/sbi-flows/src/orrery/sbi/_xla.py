"""Compiler options for the XLA programs this package compiles itself.

On a CPU, XLA's fusion emitters (its newer code generator) compile the
training programs much more slowly than the classic emitters and run them no
faster: the recipe's epoch program on gaussian_linear compiled in 3.9 s instead
of 2.6 s, its whole first fit took 19.7 s instead of 16.8 s. The build, epoch
and validation programs opt out there; other backends get no options.

Tried and left out (issue 37): LLVM at optimisation level 1
(``xla_backend_optimization_level``) compiles the epoch in a fifth less CPU
time and validation in half, and runs as fast, but its different rounding moves
a short training run enough to fail the regularizer test
(``test_penalty_is_positive_on_a_degenerate_spline_and_training_reduces_it``).
Level 0, which the build uses, would run an epoch nine times slower.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["compiler_options"]


@functools.cache
def compiler_options() -> dict[str, bool | int]:
    """XLA options for the package's own programs on the default backend."""
    if jax.default_backend() == "cpu":
        return {"xla_cpu_use_fusion_emitters": False}
    return {}
