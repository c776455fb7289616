"""Driving a jitted chunk of steps from the host: chunking, progress bar, bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ValueDomainError

# With a progress bar the run is cut into about this many equal scans (two compilations at most).
_PROGRESS_CHUNKS = 20


def chunk_lengths(num_steps: int, progress: bool) -> list[int]:
    """Split ``num_steps`` into scan lengths: one scan, or ~20 equal ones plus a remainder."""
    if not progress or num_steps < 2:
        return [num_steps]
    size = -(-num_steps // _PROGRESS_CHUNKS)
    full, rest = divmod(num_steps, size)
    return [size] * full + ([rest] if rest else [])


def drive(
    run_chunk: Callable[[Any, int, int], tuple[Any, Any, Any]],
    state: Any,
    *,
    num_steps: int,
    start_step: int,
    progress: bool,
    on_nonfinite: str,
    desc: str,
) -> tuple[Any, Any, Any]:
    """Run ``run_chunk(state, start, length) -> (state, losses, ok)`` chunk by chunk.

    Returns the final state, the losses ``(E, num_steps)`` and the per-member
    count of non-finite steps. Under ``on_nonfinite="raise"`` it stops at the
    first chunk that saw one and raises :class:`ValueDomainError`.
    """
    lengths = chunk_lengths(num_steps, progress)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=desc, unit="step")
    losses, bad = [], []
    step = start_step
    try:
        for length in lengths:
            state, chunk_losses, chunk_ok = run_chunk(state, step, length)
            losses.append(chunk_losses)
            bad.append(~chunk_ok)
            if on_nonfinite == "raise":
                _raise_on_nonfinite(chunk_ok, step)
            step += length
            if bar is not None:
                bar.update(length)
                bar.set_postfix(loss=f"{float(jnp.nanmean(chunk_losses[:, -1])):.4g}")
    finally:
        if bar is not None:
            bar.close()
    all_losses = losses[0] if len(losses) == 1 else jnp.concatenate(losses, axis=1)
    all_bad = bad[0] if len(bad) == 1 else jnp.concatenate(bad, axis=1)
    return state, all_losses, all_bad.sum(axis=1, dtype=jnp.int32)


def _raise_on_nonfinite(ok: Any, start_step: int) -> None:
    ok = np.asarray(ok)
    if ok.all():
        return
    members, steps = np.nonzero(~ok)
    first = {}
    for m, t in zip(members.tolist(), steps.tolist(), strict=True):
        first.setdefault(m, start_step + t)
    detail = ", ".join(f"member {m} at step {t}" for m, t in sorted(first.items()))
    raise ValueDomainError(
        f"on_nonfinite='raise': non-finite loss or update ({detail}); "
        "use on_nonfinite='skip' to keep such members at their last finite state"
    )


def raise_if_concrete_nonfinite(ok: Any) -> None:
    """``update``'s check: raise for a concrete per-member flag; inside a trace nothing to check."""
    try:
        flags = np.asarray(ok)
    except jax.errors.TracerArrayConversionError:
        return
    _raise_on_nonfinite(flags[:, None], 0)


def previous_skips(init_state: Any, ensemble_size: int) -> Any:
    counts = getattr(init_state, "skipped_steps", None)
    if counts is None:
        return jnp.zeros((ensemble_size,), jnp.int32)
    return jnp.asarray(counts, jnp.int32)
