"""Compiler options for the XLA programs this package compiles itself.

On a CPU, XLA's fusion emitters (its newer code generator) compile the
training programs much more slowly than the classic emitters and run them no
faster: the recipe's epoch program on gaussian_linear compiled in 3.9 s instead
of 2.6 s, its whole first fit took 19.7 s instead of 16.8 s. The build, epoch
and validation programs opt out there; other backends get no options.

LLVM runs at optimisation level 1 (``xla_backend_optimization_level``) rather
than XLA's default 2 (issue 37): the recipe's epoch program (gaussian_linear,
10-D) compiles in about a fifth less CPU time and its validation program in a
third to a half less, and an epoch runs as fast (interleaved runs, within their
spread). Only the rounding of fused arithmetic differs. Level 0, which the
build uses (it runs once), would run an epoch nine times slower.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["compiler_options"]

#: LLVM's optimisation level for the training and validation programs on a CPU.
CPU_LLVM_LEVEL = 1


@functools.cache
def compiler_options() -> dict[str, bool | int]:
    """XLA options for the package's own programs on the default backend."""
    if jax.default_backend() == "cpu":
        return {
            "xla_cpu_use_fusion_emitters": False,
            "xla_backend_optimization_level": CPU_LLVM_LEVEL,
        }
    return {}
