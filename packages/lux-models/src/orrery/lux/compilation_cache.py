"""Opt-in persistent compilation cache: compile once per machine, not once per process.

The switch lives in `orrery.interface.compilation_cache` (every JAX package of
orrery shares it) and is re-exported here unchanged:

    import orrery.lux
    orrery.lux.enable_compilation_cache()          # ~/.cache/orrery/jax (or $XDG_CACHE_HOME)
    orrery.lux.enable_compilation_cache("/scratch/jax-cache")

It is process-wide (every JAX program of the process, not only orrery's) and
off unless asked for: importing ``orrery.lux`` never turns it on.
"""

from __future__ import annotations

from orrery.interface.compilation_cache import default_cache_dir, enable_compilation_cache

__all__ = ["default_cache_dir", "enable_compilation_cache"]
