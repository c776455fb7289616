"""Training progress: a tqdm bar on a terminal, plain lines otherwise.

On a terminal the bar reads ``compiling`` while the training step is compiled,
then ``training`` with the epoch count, the training and validation losses.
When stderr is not a terminal (a log file, a notebook's captured stream, CI),
carriage-return bars would pile up into one long line, so the same facts come as
one plain line per stage and one line every ``every`` epochs (and the last).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class EpochProgress:
    """Progress of one ``fit``: a compile stage, then epochs.

    Args:
        total: number of epochs of the run.
        initial: epochs already done (a resumed run).
        enabled: ``False`` prints nothing.
        stream: where to write (default ``sys.stderr``).
        every: plain-line interval in epochs (default: about ten lines per run).
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every: int | None = None,
    ) -> None:
        self.total, self.done = int(total), int(initial)
        self.enabled = bool(enabled)
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, every or math.ceil(total / 10))
        self.terminal = self.enabled and _is_terminal(self.stream)
        self._bar: Any = None
        self._t0 = time.perf_counter()
        if self.terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.done,
                desc="training",
                unit="epoch",
                file=self.stream,
            )

    def _line(self, text: str) -> None:
        if self.enabled and not self.terminal:
            print(f"[sbi-flows] {text}", file=self.stream, flush=True)

    def compiling(self, what: str) -> None:
        """Announce the compile stage (before the first epoch)."""
        self._compile_t0 = time.perf_counter()
        if self._bar is not None:
            self._bar.set_description(f"compiling {what}")
            self._bar.refresh()
        self._line(f"compiling {what} ...")

    def compiled(self, reused: bool) -> None:
        """End of the compile stage."""
        seconds = time.perf_counter() - getattr(self, "_compile_t0", time.perf_counter())
        note = "reused the compiled step" if reused else f"compiled in {seconds:.1f} s"
        if self._bar is not None:
            self._bar.set_description("training")
            self._bar.set_postfix_str(note)
        self._line(note)
        self._t0 = time.perf_counter()

    def epoch(self, train_loss: float, val_loss: float) -> None:
        """One epoch done."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                epoch=f"{self.done}/{self.total}", train=f"{train_loss:.4g}", val=f"{val_loss:.4g}"
            )
        elif self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self._t0
            self._line(
                f"epoch {self.done}/{self.total}  train loss {train_loss:.4g}  "
                f"val loss {val_loss:.4g}  ({elapsed:.1f} s)"
            )

    def close(self, note: str | None = None) -> None:
        """Close the bar (and say why training ended, when it ended early)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if note and self.enabled:
            if self.terminal:
                print(note, file=self.stream, flush=True)
            else:
                self._line(note)
