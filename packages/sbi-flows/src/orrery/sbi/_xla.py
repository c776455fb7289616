"""Compiler options for the XLA programs this package compiles itself.

On a CPU, most of a training program's compile time is LLVM optimising the
generated kernels, and the first fit of a fresh process waits for it. Two
options cut it without slowing the programs down:

- XLA's fusion emitters (its newer code generator) off: the recipe's epoch
  program on gaussian_linear compiled in 3.9 s instead of 2.6 s with them, and
  ran no faster;
- LLVM at optimisation level 1 instead of 2 (``xla_backend_optimization_level``):
  the epoch program compiles in about a fifth less CPU time (5.4 -> 4.3 s on the
  loaded development machine) and the validation program in about 45% less
  (1.7 -> 0.9 s); an epoch runs as fast (0.32 -> 0.31 s, interleaved runs).
  Level 0 would compile the epoch in 1.5 s but run it nine times slower.

The epoch and validation programs use these; the network build, which runs
once per fit, compiles at level 0 (`orrery.sbi._posterior.build`). Other
backends get no options.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["compiler_options"]


@functools.cache
def compiler_options() -> dict[str, bool | int]:
    """XLA options for the package's own programs on the default backend."""
    if jax.default_backend() == "cpu":
        return {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
    return {}
