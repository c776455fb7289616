"""Which epoch to keep, when to lower the rate and when to stop: `KeptState`.

Pure Python, no JAX: `SBITrainer.fit` feeds `KeptState.update` each epoch's
monitored loss and stability, and acts on the returned `Decision` (hold the
epoch's parameters as the kept state; on a plateau, go back to the kept state
at a lower rate; stop). The counters are what a checkpoint records
(`KeptState.as_state` / `KeptState.restored`), so a resumed run decides as the
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from orrery.interface import ConfigError

__all__ = ["Decision", "KeptState", "is_stable"]

#: The counters of `KeptState` a checkpoint records.
_STATE = (
    "best_epoch",
    "best_loss",
    "best_stable",
    "monitor_best",
    "since_improved",
    "stopped_early",
    "lr_factor",
    "n_decays",
)


class Decision(NamedTuple):
    """What the trainer does after an epoch.

    Attributes:
        keep: the epoch's parameters become the kept state.
        decay: a plateau: restore the kept parameters and scale the learning rate
            to `KeptState.lr_factor`.
        stop: early stopping: no further epoch.
    """

    keep: bool
    decay: bool
    stop: bool


def is_stable(metrics: Mapping[str, float], thresholds: Mapping[str, float]) -> bool:
    """Whether every thresholded metric is finite and at most its threshold.

    Raises:
        ConfigError: a threshold names a metric that ``metrics`` lacks.
    """
    stable = True
    for name, limit in thresholds.items():
        if name not in metrics:
            raise ConfigError(
                f"stability threshold for {name!r} but epoch_metrics_fn returned "
                f"only {sorted(metrics)}"
            )
        value = float(metrics[name])
        if not (math.isfinite(value) and value <= limit):
            stable = False
    return stable


@dataclass
class KeptState:
    """Best/stable selection, plateau decay and early stopping over a run's epochs.

    The kept epoch has the lowest monitored loss among stable epochs (any epoch
    while none is stable); without validation data the last (stable) epoch is
    kept. An improvement of the monitored loss by more than ``min_delta`` resets
    the plateau counter; after ``decay_patience`` epochs without one the rate is
    multiplied by ``decay_factor`` (at most ``decay_max`` times), and once no decay
    is left ``early_stopping_patience`` such epochs stop the run.

    Args:
        has_val: whether the monitored loss is a validation loss.
        min_delta: the least decrease counted as an improvement.
        early_stopping_patience: epochs without improvement before stopping
            (``None``: never).
        decay_patience: epochs without improvement before a decay (``None``: off).
        decay_factor: multiplier of each decay.
        decay_max: most decays.

    Example:
        >>> kept = KeptState(has_val=True, early_stopping_patience=1)
        >>> kept.update(1, 0.5, stable=True)
        Decision(keep=True, decay=False, stop=False)
        >>> kept.update(2, 0.7, stable=True)
        Decision(keep=False, decay=False, stop=True)
    """

    has_val: bool
    min_delta: float = 0.0
    early_stopping_patience: int | None = None
    decay_patience: int | None = None
    decay_factor: float = 0.3
    decay_max: int = 3
    best_epoch: int = 0
    best_loss: float = math.inf
    best_stable: bool = False
    monitor_best: float = math.inf
    since_improved: int = 0
    lr_factor: float = 1.0
    n_decays: int = 0
    stopped_early: bool = False

    def update(self, epoch: int, loss: float, *, stable: bool = True) -> Decision:
        """Record epoch ``epoch`` (1-based) with monitored ``loss``; say what to do."""
        finite = math.isfinite(loss)
        better = loss < self.best_loss if self.has_val else True
        improves = finite and better
        keep = (stable and (not self.best_stable or improves)) or (
            not stable and not self.best_stable and improves
        )
        if keep:
            self.best_epoch, self.best_loss, self.best_stable = epoch, loss, stable
        if finite and loss < self.monitor_best - self.min_delta:
            self.monitor_best, self.since_improved = loss, 0
        else:
            self.since_improved += 1
        decay = False
        if self.decay_patience is not None and self.n_decays < self.decay_max:
            if self.since_improved >= self.decay_patience:
                self.lr_factor *= self.decay_factor
                self.n_decays += 1
                self.since_improved = 0
                decay = True
        elif (
            self.early_stopping_patience is not None
            and self.since_improved >= self.early_stopping_patience
        ):
            self.stopped_early = True
        return Decision(keep, decay, self.stopped_early)

    def as_state(self) -> dict[str, Any]:
        """The counters a checkpoint records (JSON-safe)."""
        return {name: getattr(self, name) for name in _STATE}

    def restored(self, state: Mapping[str, Any]) -> KeptState:
        """A copy with the counters of a checkpoint's ``state`` (older ones lack the decay)."""
        values = {name: state[name] for name in _STATE if name in state}
        return dataclasses.replace(self, **values)
