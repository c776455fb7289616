"""`limit_threads`: the threads of a worker process that shares the machine with others."""

from __future__ import annotations

import os
import re

from orrery.interface import ConfigError, check_positive_int

__all__ = ["limit_threads"]

_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_XLA = re.compile(r"(?:--)?(?:xla_cpu_multi_thread_eigen|intra_op_parallelism_threads)=\S*")


def _backend_started() -> bool:
    """Whether JAX has created its backends (then XLA's flags are read already)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX is a dependency
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def limit_threads(n: int) -> None:
    """Run this process's JAX (XLA's CPU thread pool) and BLAS/OpenMP on ``n`` threads.

    Meant for the worker processes of a survey: two workers labelling on two cores
    run best with one thread each, not two each. Pass it as the pool's initializer,
    before the worker's first JAX computation::

        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                            initializer=limit_threads, initargs=(1,))

    Raises:
        ConfigError: ``n`` is not a positive int, or JAX has already started its
            backend in this process (the setting could no longer take effect).
    """
    n = check_positive_int(n, "n")
    if _backend_started():
        raise ConfigError(
            "limit_threads: JAX has already started in this process, so its thread count "
            "is fixed; call it first thing in a fresh worker (a pool's initializer)"
        )
    for var in _VARS:
        os.environ[var] = str(n)
    kept = _XLA.sub("", os.environ.get("XLA_FLAGS", "")).split()
    multi = "true" if n > 1 else "false"
    flags = [f"--xla_cpu_multi_thread_eigen={multi}", f"intra_op_parallelism_threads={n}"]
    os.environ["XLA_FLAGS"] = " ".join([*flags, *kept])
