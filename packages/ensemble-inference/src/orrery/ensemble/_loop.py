"""Driving a jitted chunk of steps from the host: chunking, progress bar, bookkeeping."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from orrery.interface import ValueDomainError

from ._sharding import to_host

State = TypeVar("State")

# With a progress bar the run is cut into about this many equal scans (two compilations at most).
_PROGRESS_CHUNKS = 20

# A member that skipped more than this fraction of a run's steps is named in a warning.
SKIP_WARN_FRACTION = 0.05


def resolve_progress(progress: bool | None) -> bool:
    """`None` means: show progress when stderr is a terminal."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False
    if not isinstance(progress, bool):
        from orrery.interface import ConfigError

        raise ConfigError(f"progress: expected True, False or None, got {progress!r}")
    return progress


class _Report:
    """Progress in two stages, compilation (with the first scan) and then the steps.

    On a terminal: a tqdm bar per stage. Elsewhere (a log file, CI): one plain
    line per stage on stderr.
    """

    def __init__(self, desc: str, num_steps: int, members: int | None):
        self.desc, self.num_steps = desc, num_steps
        self.tty = resolve_progress(None)
        self.bar = None
        self.t0 = time.perf_counter()
        who = f"{members} members, " if members else ""
        self._line(f"{desc}: compiling ({who}{num_steps} steps) ...")

    def _line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def first_chunk_done(self, length: int) -> None:
        elapsed = time.perf_counter() - self.t0
        msg = f"{self.desc}: compiled and ran the first {length} steps in {elapsed:.1f} s"
        if self.tty:
            from tqdm.auto import tqdm

            self._line(msg)
            self.bar = tqdm(total=self.num_steps, initial=length, desc=self.desc, unit="step")
        self.t1 = time.perf_counter()
        self.first = length
        self.first_msg = msg

    def update(self, length: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(length)
            self.bar.set_postfix(loss=f"{loss:.4g}")

    def close(self, done: bool) -> None:
        if self.bar is not None:
            self.bar.close()
        if not done or not hasattr(self, "t1"):
            return
        rest = self.num_steps - self.first
        steps = time.perf_counter() - self.t1
        if self.tty:
            return
        self._line(f"{self.first_msg}; the other {rest} steps took {steps:.1f} s")


def chunk_lengths(num_steps: int, progress: bool) -> list[int]:
    """Split ``num_steps`` into scan lengths: one scan, or ~20 equal ones plus a remainder."""
    if not progress or num_steps < 2:
        return [num_steps]
    size = -(-num_steps // _PROGRESS_CHUNKS)
    full, rest = divmod(num_steps, size)
    return [size] * full + ([rest] if rest else [])


def drive(
    run_chunk: Callable[[State, int, int], tuple[State, Float[Array, "E T"], Bool[Array, "E T"]]],
    state: State,
    *,
    num_steps: int,
    start_step: int,
    progress: bool | None,
    on_nonfinite: str,
    desc: str,
    members: int | None = None,
) -> tuple[State, Float[Array, "E T"], Int[Array, " E"]]:
    """Run ``run_chunk(state, start, length) -> (state, losses, ok)`` chunk by chunk.

    Returns the final state, the losses ``(E, num_steps)`` and the per-member
    count of non-finite steps. Under ``on_nonfinite="raise"`` it stops at the
    first chunk that saw one and raises `ValueDomainError`.
    """
    progress = resolve_progress(progress)
    lengths = chunk_lengths(num_steps, progress)
    report = _Report(desc, num_steps, members) if progress else None
    losses, bad = [], []
    step = start_step
    done = False
    try:
        for i, length in enumerate(lengths):
            state, chunk_losses, chunk_ok = run_chunk(state, step, length)
            losses.append(chunk_losses)
            bad.append(~chunk_ok)
            if on_nonfinite == "raise":
                _raise_on_nonfinite(chunk_ok, step)
            step += length
            if report is not None:
                if i == 0:
                    jax.block_until_ready(chunk_losses)
                    report.first_chunk_done(length)
                else:
                    loss = float(jnp.nanmean(chunk_losses[:, -1]))
                    report.update(length, loss)
        done = True
    finally:
        if report is not None:
            report.close(done)
    all_losses = losses[0] if len(losses) == 1 else jnp.concatenate(losses, axis=1)
    all_bad = bad[0] if len(bad) == 1 else jnp.concatenate(bad, axis=1)
    counts = all_bad.sum(axis=1, dtype=jnp.int32)
    warn_skips(counts, num_steps, on_nonfinite, desc)
    return state, all_losses, counts


def warn_skips(counts: Int[ArrayLike, " E"], num_steps: int, on_nonfinite: str, desc: str) -> None:
    """Warn, naming the members, when more than `SKIP_WARN_FRACTION` of their steps were bad."""
    counts = to_host(counts)
    members = np.nonzero(counts > SKIP_WARN_FRACTION * num_steps)[0].tolist()
    if not members:
        return
    worst = int(counts.max())
    if on_nonfinite == "skip":
        effect = (
            "those steps were skipped, so these members may still sit at (or near) their "
            "initial values"
        )
    else:
        effect = "those steps were applied, so these members' parameters may be NaN or inf"
    warnings.warn(
        f"{desc}: member(s) {members} had a non-finite loss, gradient or update in more "
        f"than {SKIP_WARN_FRACTION:.0%} of the {num_steps} steps (up to {worst}); {effect}. "
        "Check the data, the prior_weight and the learning rate (result.skipped_steps "
        "has the counts).",
        RuntimeWarning,
        stacklevel=4,
    )


def _raise_on_nonfinite(ok: Bool[ArrayLike, "E T"], start_step: int) -> None:
    ok = to_host(ok)
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


def raise_if_concrete_nonfinite(ok: Bool[ArrayLike, " E"]) -> None:
    """``update``'s check: raise for a concrete per-member flag; inside a trace nothing to check."""
    try:
        flags = np.asarray(ok)
    except jax.errors.TracerArrayConversionError:
        return
    _raise_on_nonfinite(flags[:, None], 0)


def previous_skips(init_state: object, ensemble_size: int) -> Int[Array, " E"]:
    counts = getattr(init_state, "skipped_steps", None)
    if counts is None:
        return jnp.zeros((ensemble_size,), jnp.int32)
    return jnp.asarray(counts, jnp.int32)
