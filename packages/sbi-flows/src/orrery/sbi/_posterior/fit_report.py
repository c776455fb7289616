"""End-of-fit checks that speak up: under-training and a training set too small for the model.

The second check is skipped when early stopping on validation data is on (restoring
the best state is what keeps an over-sized model from over-fitting).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

#: Name of the general-purpose configuration the warnings point to.
RECIPE = "ConditionalFlowPosterior.recommended(parameter_dim, num_simulations)"
#: Over-fitting is likely below one training simulation per this many trainable weights.
WEIGHTS_PER_SIMULATION_LIMIT = 100
#: A decrease of the monitored loss over the last epochs larger than this (nats per
#: simulation) means training was still improving.
IMPROVEMENT_TOLERANCE = 0.01


def count_weights(model: Any) -> int:
    """Number of trainable (inexact-array) scalars in an equinox model."""
    return int(sum(np.size(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))))


def still_improving(losses: Sequence[float]) -> tuple[float, int] | None:
    """``(decrease, window)`` when the loss fell by more than the tolerance in the last epochs.

    The window is the last ``max(2, 20%)`` epochs; the decrease is the best loss
    before the window minus the best loss inside it.

    Example:
        >>> still_improving([3.0, 2.0, 1.5, 1.2, 1.0])
        (0.5, 2)
        >>> still_improving([3.0, 1.0, 1.0, 1.001, 1.0]) is None
        True
    """
    values = [v for v in losses if math.isfinite(v)]
    window = max(2, math.ceil(0.2 * len(values)))
    if len(values) <= window:
        return None
    decrease = min(values[:-window]) - min(values[-window:])
    return (round(decrease, 6), window) if decrease > IMPROVEMENT_TOLERANCE else None


def warn_after_fit(
    artifacts: Any, model: Any, n_train: int, *, from_recipe: bool = False
) -> list[str]:
    """Warn (``UserWarning``) about an under-trained fit or a small training set.

    Args:
        artifacts: the fit's `TrainingArtifacts`.
        model: the fitted model (its trainable weights are counted).
        n_train: training simulations.
        from_recipe: the posterior came from the recipe, so the advice is to train it
            longer rather than to switch to it.

    Returns:
        The messages issued (also recorded in the trainer metadata as ``warnings``).
    """
    messages = []
    meta = artifacts.trainer_metadata
    history = artifacts.history
    losses = history.get("val_loss", [])
    which = "validation"
    if not any(math.isfinite(v) for v in losses):
        losses, which = history.get("train_loss", []), "training"
    found = None if meta.get("stopped_early") else still_improving(losses)
    if found is not None:
        decrease, window = found
        advice = (
            f"raise num_epochs (the recipe chose {meta.get('num_epochs')} for this many "
            "simulations)"
            if from_recipe
            else f"train longer (num_epochs, early_stopping_patience) or use {RECIPE}"
        )
        messages.append(
            f"fit: the {which} loss was still improving when training ended: it fell by "
            f"{decrease:.3g} nats per simulation over the last {window} of "
            f"{len(losses)} epochs; the posterior is probably under-trained: {advice}"
        )
    weights = count_weights(model)
    # Early stopping on validation data, restoring the best state, guards against it.
    guarded = meta.get("early_stopping_patience") is not None and meta.get("n_val", 0) > 0
    if n_train * WEIGHTS_PER_SIMULATION_LIMIT < weights and not guarded:
        messages.append(
            f"fit: {n_train} training simulations for {weights} trainable weights (more "
            f"than {WEIGHTS_PER_SIMULATION_LIMIT} weights per simulation); over-fitting is "
            f"likely: simulate more, use a smaller network, or use {RECIPE}, which sizes "
            "the network to the number of simulations"
        )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=4)
    meta["warnings"] = messages
    return messages
