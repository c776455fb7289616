"""Helpers the lux benchmark scripts share (not a benchmark: run_benchmarks skips `_` files)."""

from __future__ import annotations

import os


def thread_env(n: int) -> dict[str, str]:
    """The environment for a child process limited to ``n`` BLAS/XLA threads."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(n)
    multi = "true" if n > 1 else "false"
    env["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={n} "
        + env.get("XLA_FLAGS", "")
    ).strip()
    return env
