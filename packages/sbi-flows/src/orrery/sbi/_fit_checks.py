"""End-of-fit warnings about the data and the generalisation gap (issue 35).

Beside `_fit_report` (under-training, too many weights per simulation), `fit` says,
once each, with the numbers and what to do:

- what the observation preparation chose on its own (`_preprocess.prepare_dataset`:
  transforms, constant and near-constant features);
- extreme outliers in the scaled training observations (`_preprocess.check_outliers`);
- over-fitting that costs held-out fit (`overfit_signs`): the validation loss of the
  kept epoch more than `OVERFIT_GAP` nats per simulation above its training loss, and
  the validation history showing that the network fitted the training rows instead of
  the problem: it stopped improving early (the kept epoch in the first
  `OVERFIT_EARLY_FRACTION` of the epochs run) or rose by more than `OVERFIT_RISE` nats
  after the kept epoch.

A gap alone is not the signal. A flexible flow with early stopping ends a fit of 10^4
simulations 0.4-1.6 nats apart on 6 of the 10 benchmark problems (slcp 1.1, whose
validation loss keeps improving while the gap grows) with its held-out fit still at its
best; over-fitting fits (a big network or the recipe on 150-500 simulations with
distractor features) keep epoch 1 or their validation loss climbs 0.8-800 nats after
the kept epoch, against at most 0.19 (and a kept epoch at 62% of the run or later) on
the benchmarks (benchmarks/README.md, "Over-fitting, third session").

Every message is also appended to ``artifacts.trainer_metadata["warnings"]``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ._preprocess import check_outliers

__all__ = [
    "OVERFIT_EARLY_FRACTION",
    "OVERFIT_GAP",
    "OVERFIT_RISE",
    "overfit_gap",
    "overfit_signs",
    "warn_preparation_and_fit",
]

#: Validation minus training loss (nats per simulation) at the kept epoch that may be over-fitting.
OVERFIT_GAP = 0.3
#: A kept epoch within this fraction of the epochs run: the held-out fit stopped improving early.
OVERFIT_EARLY_FRACTION = 1 / 3
#: A rise of the validation loss after the kept epoch (nats per simulation) that shows
#: further training making the held-out fit worse.
OVERFIT_RISE = 0.5


def overfit_gap(
    history: dict[str, list[float]], kept_epoch: int, kept_train_loss: float = math.nan
) -> float | None:
    """Validation minus training loss at the kept (1-based) epoch, ``None`` without both.

    The training loss is ``kept_train_loss`` where finite (the validation loss
    function on the kept parameters over as many training rows as validation rows,
    `SBITrainer.fit`'s ``validation_metrics["kept_train_loss"]``), else the epoch's
    running mean from the history.
    """
    train, val = history.get("train_loss", []), history.get("val_loss", [])
    i = (kept_epoch or len(train)) - 1
    if not 0 <= i < min(len(train), len(val)):
        return None
    gap = val[i] - (kept_train_loss if math.isfinite(kept_train_loss) else train[i])
    return gap if math.isfinite(gap) else None


def overfit_signs(history: dict[str, list[float]], kept_epoch: int) -> list[str]:
    """How the validation history shows held-out fit lost to over-fitting (empty: it does not).

    Args:
        history: the fit's history (``val_loss`` per epoch).
        kept_epoch: the kept (1-based) epoch; 0 or ``None`` for the last.

    Returns:
        Phrases for the warning: the kept epoch within the first
        `OVERFIT_EARLY_FRACTION` of the epochs run (the held-out fit stopped improving
        early while training went on), and a rise of more than `OVERFIT_RISE` nats of
        the validation loss after the kept epoch.

    Example:
        >>> signs = overfit_signs({"val_loss": [2.0, 2.2, 2.9, 2.5]}, 1)
        >>> signs[0]
        'the validation loss stopped improving at epoch 1 of 4'
        >>> signs[1]
        'it rose by 0.90 nats after the kept epoch'
        >>> overfit_signs({"val_loss": [2.0, 1.5, 1.2, 1.25]}, 3)
        []
    """
    val = [v for v in history.get("val_loss", []) if math.isfinite(v)]
    if not val:
        return []
    kept = min(kept_epoch or len(val), len(val))
    signs = []
    if kept <= OVERFIT_EARLY_FRACTION * len(val):
        signs.append(f"the validation loss stopped improving at epoch {kept} of {len(val)}")
    rise = max(val[kept - 1 :]) - val[kept - 1]
    if rise > OVERFIT_RISE:
        signs.append(f"it rose by {rise:.2f} nats after the kept epoch")
    return signs


def warn_preparation_and_fit(
    artifacts: Any, dataset: Any, train: Any, preparation: list[str]
) -> list[str]:
    """Warn (``UserWarning``) about the data preparation, outliers and over-fitting.

    Args:
        artifacts: the fit's `TrainingArtifacts`.
        dataset: the reader the posterior trained on (its ``preprocessing_metadata``).
        train: the (first rows of the) scaled training split, a `PosteriorBatch`.
        preparation: messages of the observation preparation.

    Returns:
        The messages issued.
    """
    messages = list(preparation)
    messages += [f"fit: {m}" for m in check_outliers(dataset, train)]
    kept = artifacts.validation_metrics.get("best_epoch") or 0
    kept_train = float(artifacts.validation_metrics.get("kept_train_loss", math.nan))
    gap = overfit_gap(artifacts.history, kept, kept_train)
    signs = overfit_signs(artifacts.history, kept) if gap is not None else []
    if gap is not None and gap > OVERFIT_GAP and signs:
        i = (kept or len(artifacts.history["train_loss"])) - 1
        val_i = artifacts.history["val_loss"][i]
        messages.append(
            f"fit: over-fitting: at the kept epoch {i + 1} the validation loss "
            f"({val_i:.3f}) is {gap:.2f} nats per simulation above "
            f"the training loss ({val_i - gap:.3f}; more than "
            f"{OVERFIT_GAP} apart), and the network fitted the training rows rather than "
            f"the problem: {' and '.join(signs)}. The posterior is probably too narrow or "
            "mis-placed away from the simulations it saw. Simulate more, or regularise: a "
            "smaller network (hidden_dim, embedding_dim), weight_decay, "
            "embedding_noise_std or a larger batch_size"
        )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    meta = artifacts.trainer_metadata
    meta["warnings"] = list(meta.get("warnings", [])) + messages
    return messages
