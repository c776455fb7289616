"""Classifier two-sample test (C2ST) with sbibm's exact definition."""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import ArrayLike

from orrery.interface import (
    ShapeError,
    as_int_seed,
    check_finite,
    check_ndim,
    check_positive_int,
    require,
)

from ._protocol import draw_samples


def c2st(
    samples_a: ArrayLike,
    samples_b: ArrayLike,
    *,
    seed: int = 0,
    n_folds: int = 5,
    z_score: bool = True,
    n_jobs: int | None = None,
) -> float:
    """Classifier two-sample test accuracy between two sample sets.

    Follows sbibm's ``c2st``: both sets are z-scored with the mean and (unbiased)
    standard deviation of ``samples_a``; an ``MLPClassifier(activation="relu",
    hidden_layer_sizes=(10 * dim, 10 * dim), max_iter=10000, solver="adam")`` is
    scored by the mean accuracy over ``n_folds`` shuffled K-fold splits. 0.5 means
    the classifier cannot tell the sets apart, 1.0 that they are fully separated.
    Needs scikit-learn (extra ``sbi-flows[diagnostics]``).

    Args:
        samples_a: ``(n_a, dim)`` samples, e.g. from the reference posterior.
        samples_b: ``(n_b, dim)`` samples, e.g. from the estimated posterior.
        seed: seed of the classifier initialisation and of the fold shuffling.
        n_folds: number of cross-validation folds.
        z_score: standardise by ``samples_a`` first (sbibm's default).
        n_jobs: folds fitted in parallel (scikit-learn's ``n_jobs``; ``-1`` uses every
            core). The score does not depend on it.

    Returns:
        Mean held-out classification accuracy.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> c2st(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)))  # doctest: +SKIP
        0.49...
    """
    neural_network = require(
        "sklearn.neural_network", extra="sbi-flows[diagnostics]", feature="diagnostics.c2st"
    )
    model_selection = require(
        "sklearn.model_selection", extra="sbi-flows[diagnostics]", feature="diagnostics.c2st"
    )
    a = np.asarray(samples_a, dtype=np.float64)
    b = np.asarray(samples_b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    check_ndim(a, 2, "samples_a")
    check_ndim(b, 2, "samples_b")
    if a.shape[1] != b.shape[1]:
        raise ShapeError(
            f"samples_a and samples_b must have the same dimension; got {a.shape[1]} and "
            f"{b.shape[1]} (shapes {a.shape} and {b.shape})"
        )
    check_finite(a, "samples_a")
    check_finite(b, "samples_b")
    check_positive_int(n_folds, "n_folds", minimum=2)
    if min(len(a), len(b)) < n_folds:
        raise ShapeError(
            f"each sample set needs at least n_folds={n_folds} rows; got {len(a)}, {len(b)}"
        )
    seed = as_int_seed(seed)
    if z_score:
        mean = a.mean(axis=0)
        std = a.std(axis=0, ddof=1)
        std = np.where(std > 0, std, 1.0)
        a = (a - mean) / std
        b = (b - mean) / std
    dim = a.shape[1]
    classifier = neural_network.MLPClassifier(
        activation="relu",
        hidden_layer_sizes=(10 * dim, 10 * dim),
        max_iter=10000,
        solver="adam",
        random_state=seed,
    )
    data = np.concatenate([a, b])
    target = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    folds = model_selection.KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = model_selection.cross_val_score(
        classifier, data, target, cv=folds, scoring="accuracy", n_jobs=n_jobs
    )
    return float(np.mean(scores))


def posterior_c2st(
    posterior: Any,
    observation: Any,
    reference_samples: ArrayLike,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    n_folds: int = 5,
    n_jobs: int | None = None,
) -> float:
    """C2ST between a posterior's draws for one observation and reference samples.

    The posterior is sampled through the diagnostics protocol (``sample_batch``
    first): for a `ConditionalFlowPosterior` the draws are in physical units and
    inside a bounded prior's support, so ``reference_samples`` are physical too,
    whatever the posterior's ``parameter_space``. ``observation`` is as the user
    has it: a list of `ObservationBlock`s, an `EncodedObservation`, or a one-block
    posterior's raw values.

    Args:
        posterior: see ``orrery.sbi.diagnostics._protocol``.
        observation: one observation.
        reference_samples: ``(m, dim)`` samples of the reference posterior.
        num_samples: posterior draws (default ``m``).
        seed: seed of the draws and of the classifier.
        n_folds: cross-validation folds.
        n_jobs: as in `c2st`.

    Returns:
        The C2ST accuracy (0.5: indistinguishable).
    """
    ref = np.asarray(reference_samples, dtype=np.float64)
    check_ndim(ref, 2, "reference_samples")
    n = len(ref) if num_samples is None else check_positive_int(num_samples, "num_samples")
    draws = draw_samples(posterior, [observation], n, as_int_seed(seed))[0]
    return c2st(ref, draws, seed=seed, n_folds=n_folds, n_jobs=n_jobs)
