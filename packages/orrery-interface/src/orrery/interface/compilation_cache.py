"""Opt-in persistent compilation cache: compile once per machine, not once per process.

A fresh Python process compiles every JAX program it runs (a Cannon training
program or an SBI recipe's epoch takes seconds). JAX can keep compiled programs
on disk and reuse them in later processes with the same JAX version, device and
shapes. Every JAX package of orrery (``orrery.lux``, ``orrery.sbi``) re-exports
this one switch; it is switched on only when asked, because the setting is
process-wide (it applies to every JAX program the process runs, not only
orrery's):

    from orrery.interface.compilation_cache import enable_compilation_cache
    enable_compilation_cache()                      # ~/.cache/orrery/jax (or $XDG_CACHE_HOME)
    enable_compilation_cache("/scratch/jax-cache")  # a folder shared by a campaign's workers

or, without a line of code, with JAX's own environment variable (read when JAX
is imported): ``JAX_COMPILATION_CACHE_DIR=/scratch/jax-cache python script.py``
(JAX then caches only programs that took at least a second to compile).
Importing this module (or any orrery package) never turns the cache on, and
imports no JAX: ``enable_compilation_cache`` needs ``orrery-interface[jax]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ConfigError
from .validation import check_nonnegative_float, require

__all__ = ["default_cache_dir", "enable_compilation_cache"]

_EXTRA = "orrery-interface[jax]"


def default_cache_dir() -> Path:
    """The user cache folder for compiled programs: ``<user cache>/orrery/jax``.

    ``$XDG_CACHE_HOME`` (else ``~/.cache``) on Linux, ``~/Library/Caches`` on
    macOS and ``%LOCALAPPDATA%`` on Windows.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "orrery" / "jax"


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None, *, min_compile_time_s: float = 0.0
) -> Path:
    """Switch on JAX's persistent compilation cache for this process.

    Sets ``jax_compilation_cache_dir`` (and ``jax_persistent_cache_min_compile_time_secs``)
    through ``jax.config``; programs compiled from then on are written to
    ``path`` and read back by later processes instead of being compiled again.
    The setting is process-wide: it covers every JAX program of the process.
    Calling it again with another path moves the cache there.

    Args:
        path: the cache folder (created if missing); None means
            `default_cache_dir`.
        min_compile_time_s: cache only programs that took at least this long to
            compile (JAX's default is 1 s; 0 keeps every program, which is what
            a cold start wants).

    Returns:
        The cache folder.

    Raises:
        ConfigError: if ``min_compile_time_s`` is negative, infinite or not a number, or
            ``path`` exists and is not a folder.
        MissingDependencyError: if JAX is not installed (``orrery-interface[jax]``).
    """
    min_time = check_nonnegative_float(min_compile_time_s, "min_compile_time_s")
    folder = Path(default_cache_dir() if path is None else path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"path: {str(folder)!r} exists and is not a folder")
    feature = "enable_compilation_cache()"
    jax = require("jax", extra=_EXTRA, feature=feature)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    # JAX decides once per process, at the first compilation, whether the cache is
    # used; a process that compiled before this call must be told to decide again
    cache = require(
        "jax.experimental.compilation_cache.compilation_cache", extra=_EXTRA, feature=feature
    )
    cache.reset_cache()
    return folder
