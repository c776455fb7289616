"""Worker processes of a survey: threads (`limit_threads`), cores and pool (`process_pool`)."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from orrery.interface import ConfigError, check_positive_int

__all__ = ["limit_threads", "process_pool"]

_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_XLA = re.compile(r"(?:--)?(?:xla_cpu_multi_thread_eigen|intra_op_parallelism_threads)=\S*")


def _backend_started() -> bool:
    """Whether JAX has created its backends (then XLA's flags are read already)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX is a dependency
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def _require_pinning(argument: str, instead: str) -> None:
    """Raise `ConfigError` naming ``argument`` where processes cannot be pinned (not Linux)."""
    if not (hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")):
        raise ConfigError(
            f"{argument}: pinning to cores needs os.sched_setaffinity, which this "
            f"platform lacks (Linux has it); {instead}"
        )


def _pin(cores: Iterable[int]) -> None:
    """This process (every thread it starts from now on) on ``cores`` only."""
    _require_pinning("cores", "leave cores=None here")
    wanted = set()
    for core in cores:
        if isinstance(core, bool) or not isinstance(core, int) or core < 0:
            raise ConfigError(f"cores: expected CPU numbers (ints >= 0), got {core!r}")
        wanted.add(core)
    if not wanted:
        raise ConfigError("cores: expected at least one CPU number, got none")
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as err:
        raise ConfigError(
            f"cores: cannot pin this process to {sorted(wanted)} (this machine lets it use "
            f"{sorted(os.sched_getaffinity(0))}): {err}"
        ) from err


def limit_threads(n: int, cores: Iterable[int] | None = None) -> None:
    """Run this process's JAX (XLA's CPU thread pool) and BLAS/OpenMP on ``n`` threads.

    Meant for the worker processes of a survey: two workers labelling on two cores
    run best with one thread each, not two each. Pass it as the pool's initializer,
    before the worker's first JAX computation::

        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                            initializer=limit_threads, initargs=(1,))

    (`process_pool` builds such a pool, and can give each worker cores of its own.)

    Args:
        n: threads for XLA's CPU intra-op pool and BLAS/OpenMP.
        cores: CPU numbers to pin this process to (``os.sched_setaffinity``, Linux
            only), or None to leave it where the system puts it. Unpinned, a process
            on one XLA thread still runs XLA's runtime threads on other cores, so it
            takes part of a second core.

    Raises:
        ConfigError: ``n`` is not a positive int, JAX has already started its backend
            in this process (the setting could no longer take effect), or ``cores``
            is given where pinning is impossible (not Linux; no such CPU).
    """
    n = check_positive_int(n, "n")
    if _backend_started():
        raise ConfigError(
            "limit_threads: JAX has already started in this process, so its thread count "
            "is fixed; call it first thing in a fresh worker (a pool's initializer)"
        )
    if cores is not None:
        _pin(cores)
    for var in _VARS:
        os.environ[var] = str(n)
    kept = _XLA.sub("", os.environ.get("XLA_FLAGS", "")).split()
    multi = "true" if n > 1 else "false"
    flags = [f"--xla_cpu_multi_thread_eigen={multi}", f"intra_op_parallelism_threads={n}"]
    os.environ["XLA_FLAGS"] = " ".join([*flags, *kept])


def _start_worker(n: int, slots: Any, cores: tuple[int, ...] | None) -> None:
    """A pinned pool's initializer: take the next free slot's ``n`` cores, then `limit_threads`."""
    mine = None
    if cores is not None:
        with slots.get_lock():
            slot = slots.value
            slots.value += 1
        first = slot * n
        mine = [cores[(first + i) % len(cores)] for i in range(n)]
    limit_threads(n, mine)


def process_pool(workers: int, *, threads: int = 1, pin: bool = False) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes for a survey, each on ``threads`` threads.

    Spawned, not forked (a fork of a process running JAX's threads can deadlock);
    each worker runs `limit_threads` first. With ``pin`` each worker is pinned to
    ``threads`` cores of its own, taken in turn from the cores this process may use
    (Linux; round robin once there are more workers than cores): a worker's XLA
    runtime threads then stay on its cores instead of taking part of another
    worker's, and two one-thread workers on two cores run at twice one worker's rate.

    Raises:
        ConfigError: ``workers`` or ``threads`` not a positive int, or ``pin`` where
            the platform cannot pin processes (not Linux).
    """
    workers = check_positive_int(workers, "workers")
    threads = check_positive_int(threads, "threads")
    spawn = multiprocessing.get_context("spawn")
    cores = None
    if pin:
        _require_pinning("pin", "use pin=False")
        cores = tuple(sorted(os.sched_getaffinity(0)))
    slots = spawn.Value("i", 0)  # the next worker's slot, shared by the workers
    return ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_start_worker, initargs=(threads, slots, cores)
    )
