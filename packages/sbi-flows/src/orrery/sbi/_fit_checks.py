"""End-of-fit warnings about the data and the generalisation gap (issue 35).

Beside `_fit_report` (under-training, too many weights per simulation), `fit` says,
once each, with the numbers and what to do:

- what the observation preparation chose on its own (`_preprocess.prepare_dataset`:
  transforms, constant and near-constant features);
- extreme outliers in the scaled training observations (`_preprocess.check_outliers`);
- over-fitting: the validation loss of the kept epoch more than `OVERFIT_GAP` nats
  per simulation above its training loss.

Every message is also appended to ``artifacts.trainer_metadata["warnings"]``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ._preprocess import check_outliers

__all__ = ["OVERFIT_GAP", "overfit_gap", "warn_preparation_and_fit"]

#: Validation minus training loss (nats per simulation) at the kept epoch that is over-fitting.
OVERFIT_GAP = 0.3


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
    if gap is not None and gap > OVERFIT_GAP:
        i = (kept or len(artifacts.history["train_loss"])) - 1
        val_i = artifacts.history["val_loss"][i]
        messages.append(
            f"fit: over-fitting: at the kept epoch {i + 1} the validation loss "
            f"({val_i:.3f}) is {gap:.2f} nats per simulation above "
            f"the training loss ({val_i - gap:.3f}; more than "
            f"{OVERFIT_GAP} apart): the posterior is probably too narrow or mis-placed away "
            "from the simulations it saw. Simulate more, or regularise: a smaller network "
            "(hidden_dim, embedding_dim), weight_decay, embedding_noise_std, a larger "
            "batch_size or a shorter early_stopping_patience"
        )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    meta = artifacts.trainer_metadata
    meta["warnings"] = list(meta.get("warnings", [])) + messages
    return messages
