"""The general-purpose configuration behind `ConditionalFlowPosterior.recommended`.

Chosen for robustness rather than for one task:

- a linear-Gaussian start (``linear_gaussian_start``): the flow holds a
  conditional affine layer and training starts from the ridge-regression
  posterior ``N(A x + b, Σ)`` of the raw observation, with every coupling and
  autoregressive layer starting as the identity; a posterior whose location is
  linear in the data starts (nearly) exact, and any other starts from its best
  linear-Gaussian approximation instead of a random flow;
- neural spline couplings (five layers, 12 bins on [-5, 5]) and one masked
  autoregressive affine layer given the observation (``"spline_affine"``): three
  couplings and the affine layer on the base side of the linear-Gaussian layer
  shape the standardised residual of the linear prediction, where a shape that
  moves with the observation (gaussian_mixture's narrow component) stands still;
  two couplings after it shape z-scored physical coordinates, where a bounded
  prior's walls stand still (gaussian_linear_uniform); the affine layer carries
  location and scale beyond the linear start, also far from the prior's centre
  where splines are the identity; with draws outside a bounded prior rejected
  (as `sbi` does) no mass is lost to the box's edges;
- an encoder with a linear skip from the raw observation to the context (it
  carries the start's regression);
- width adapting to the budget (64 hidden units below 20,000 simulations, 128
  above), a 32-wide embedding (at least the parameter count), batches of 256
  (64 below 5,000 simulations);
- a cosine learning-rate schedule (peak 1e-3, 2% warm-up, floor 1e-5) over a
  budget of about 8,000 optimiser steps and at least 60 epochs (60 to 400 epochs);
  on a plateau of 8 epochs the best state is restored and the rate multiplied by
  0.3 (at most 3 times), then early stopping (patience 12) restores the best
  state: a problem that over-fits early gets its fine-tuning at a low rate, one
  that keeps improving (two_moons) keeps its full schedule;
- no per-epoch closure gates (they cost time and do not change the kept state of
  a spline flow trained this way);
- observations prepared per feature from the training data
  (``observation_transform="auto"``, `orrery.sbi._preprocess`): log of positive
  features spanning more than 1.5 decades, asinh of counts with zeros and of
  signed data with heavy tails, a robust centre and scale where outliers dominate,
  and positive, right-skewed parameters without a prior box in log space
  (``parameter_transform="auto"``); on the ten problems below none of it applies
  but for one asinh feature of slcp_distractors, so they are prepared as before.
  Issue 35's problems (benchmarks/README.md): sbibm's lotka_volterra C2ST 0.981 ->
  0.900, sir 0.740 -> 0.607;
- over-fitting handled where it happens (`fit_with_overfitting_control`): a fit whose
  validation loss at the kept epoch ends more than 0.3 nats above its training loss
  is fitted again with Gaussian noise on the scaled observations (`regularisation`:
  0.1 standard deviations at 10^4 simulations, times sqrt(10^4 / n), within
  0.02-0.2), and the fit with the lower validation loss is kept. A fit that does not
  over-fit runs once, exactly as before, so no problem that does not over-fit is
  touched. Chosen on bernoulli_glm (10^4 simulations, validation loss at the kept
  epoch / gap: recipe 0.209 / 0.77 nats; weight decay 0.5: 0.170 / 0.66, 2.0: 0.234 /
  0.36; hidden width 32: 0.222 / 0.62; noise 0.1: 0.186 / 0.08) and slcp_distractors
  (0.1 noise was worse there, 3.30 against 3.21, so the first fit is kept and the
  warning stays: its 92 distractors let any network tell training rows apart).

Measured on four problems (held-out negative log-likelihood of 5,000 fresh
simulations, 10^4 training simulations; lower is better; the exact posterior's
on gaussian_linear is -0.79), previous recipe (no linear start, batches of 128)
-> linear start -> linear start with batches of 256 (this recipe):
gaussian_linear -0.523 -> -0.782 -> -0.785, heavy_tailed_3d 1.999 -> 1.980 ->
1.977, folded_5d 1.936 -> 1.891 -> 1.868, two_moons -3.526 -> -3.653 -> -3.627
(two_moons varies by about 0.05 from run to run). With few simulations and a wide
observation (5 parameters, 1,000 simulations, 5 informative and 95 noise
features, tanh link) the start gained 0.09 nats (-4.44 -> -4.53). Shorter patience (8 epochs, one
decay) was 30-40% faster and 0.03 nats worse on two_moons and folded_5d. Re-measured on this
recipe: plateaus of 5 epochs and patience 8 fitted in 2-18% less time, plateaus of 6, two
decays and patience 8 in 4-34% less, both 0.06 nats worse on two_moons (about its run-to-run
spread) and 0.001-0.005 elsewhere; neither brings a fit near a quarter of `sbi`'s time
where it is not already.
Before the linear start: the affine layer gave the heavy-tailed gain (0.35
nats), the plateau decay 0.02-0.07 nats on the problems that stop early;
rejected were shorter cosine schedules (20-30 epochs: 0.1-0.25 nats worse on
two_moons), fewer coupling layers with more affine layers (worse on folded_5d
and two_moons), 8 bins, width 32, weight decay 1e-2.
The 60-epoch floor binds above about 39,000 simulations. With 10^5 simulations (held-out
negative log-likelihood of 3,000 fresh simulations), the former floor of 30 epochs ->
60: two_moons -3.738 -> -3.759 (and at 30 the fit warned that it was still improving),
folded_5d 1.733 -> 1.713, gaussian_linear -0.833 -> -0.832 (early stopping after 40),
at 1.3-1.9x the fit time (76-151 s -> 136-237 s).
Where the couplings sit around the linear-Gaussian layer was chosen by C2ST on sbibm's
gaussian_linear_uniform and gaussian_mixture (means over observations 1-3; all before
it: 0.628 (observation 1 alone) and 0.524; all after: 0.598 and 0.756; three before and
two after: 0.548 and 0.544; `sbi` 0.618 and 0.714).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from orrery.interface import check_positive_int

from .._fit_checks import OVERFIT_GAP, overfit_gap

#: Optimiser steps the schedule is sized for, and its shortest length in epochs.
TARGET_STEPS, MIN_EPOCHS = 8_000, 60
VALIDATION_FRACTION = 0.1
#: Epochs of a validation plateau before the rate drops, and before stopping after the last drop.
DECAY_PATIENCE, PATIENCE = 8, 12


def recommended_config(parameter_dim: int, num_simulations: int) -> dict[str, Any]:
    """Constructor arguments of the recipe for a problem of this size.

    Args:
        parameter_dim: number of inferred parameters.
        num_simulations: simulations in the dataset (training plus validation).

    Returns:
        Keyword arguments for `ConditionalFlowPosterior` (without ``parameter_dim``).

    Example:
        >>> cfg = recommended_config(2, 10_000)
        >>> cfg["batch_size"], cfg["num_epochs"], cfg["early_stopping_patience"]
        (256, 229, 12)
    """
    check_positive_int(parameter_dim, "parameter_dim")
    n = check_positive_int(num_simulations, "num_simulations")
    batch = 64 if n < 5_000 else 256
    steps_per_epoch = max(1, int(n * (1 - VALIDATION_FRACTION)) // batch)
    epochs = min(400, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch)))
    hidden = 64 if n < 20_000 else 128
    return {
        "parameter_space": "physical",
        "flow_family": "spline_affine",
        "num_coupling_layers": 5,
        "hidden_dim": hidden,
        "conditioner_depth": 2,
        "num_spline_bins": 12,
        "spline_bound": 5.0,
        "embedding_dim": max(32, parameter_dim),
        "photometry_embedding_dim": 32,
        "spectrum_embedding_dim": 32,
        "encoder_hidden_dim": hidden,
        "learning_rate": 1e-3,
        "batch_size": batch,
        "num_epochs": epochs,
        "use_cosine_schedule": True,
        "warmup_fraction": 0.02,
        "min_learning_rate": 1e-5,
        "early_stopping_patience": PATIENCE,
        "lr_decay_patience": DECAY_PATIENCE,
        "lr_decay_factor": 0.3,
        "lr_decay_max": 3,
        "encoder_linear_skip": True,
        "linear_gaussian_start": True,
        "observation_transform": "auto",
        "parameter_transform": "auto",
        "gradient_clip_norm": 5.0,
        "stable_inverse_forward_max_abs_error_threshold": None,
        "stable_inverse_forward_logdet_closure_max_abs_error_threshold": None,
        "stable_cube_edge_hit_rate_threshold": None,
    }


#: Gaussian noise (in scaled observation units) of the regularised fit, at 10^4 simulations.
REFIT_NOISE = 0.1


def regularisation(
    parameter_dim: int, num_simulations: int, observation_dim: int
) -> dict[str, Any]:
    """Training-only settings of the recipe's regularised fit (see `fit_with_overfitting_control`).

    Noise on the scaled observations, ``0.1 * sqrt(10^4 / n)`` standard deviations
    (at most 0.2, at least 0.02): the fewer the simulations, the farther apart they
    lie in observation space and the more easily a network tells training rows
    apart (and learns their parameters by heart); the noise blurs what told them
    apart. Only training-time settings change: the architecture and its compiled
    build stay. The observation's size enters only as a check (a wider observation
    is a wider margin for memorising, but the noise is per feature already).

    Args:
        parameter_dim: number of inferred parameters.
        num_simulations: simulations in the dataset (training plus validation).
        observation_dim: features of the observation (all blocks).

    Returns:
        Constructor arguments to set for the second fit.

    Example:
        >>> regularisation(10, 10_000, 10)
        {'embedding_noise_std': 0.1}
    """
    check_positive_int(parameter_dim, "parameter_dim")
    n = check_positive_int(num_simulations, "num_simulations")
    check_positive_int(observation_dim, "observation_dim")
    noise = min(0.2, max(0.02, REFIT_NOISE * math.sqrt(10_000 / n)))
    return {"embedding_noise_std": round(noise, 4)}


def _kept_val_loss(artifacts: Any) -> float:
    history = artifacts.history
    kept = artifacts.validation_metrics.get("best_epoch") or len(history["val_loss"])
    value = history["val_loss"][kept - 1] if history.get("val_loss") else math.nan
    return value if math.isfinite(value) else math.inf


def fit_with_overfitting_control(
    posterior: Any, fit_once: Callable[[], Any], overridden: frozenset[str]
) -> Any:
    """The recipe's fit: once, and again regularised if the first one over-fits.

    A first fit whose validation loss at the kept epoch is more than `OVERFIT_GAP`
    nats above its training loss is followed by a second fit with `regularisation`'s
    settings (those the caller did not override); the one with the lower validation
    loss at its kept epoch is kept, with its settings and its warnings (the other's
    are dropped; the trainer metadata records ``"recipe_refit"``). A fit that does
    not over-fit is returned as it is, so problems that do not over-fit train
    exactly as before.

    Args:
        posterior: the posterior being fitted (its settings are changed in place).
        fit_once: one fit of ``posterior``, returning its `TrainingArtifacts`.
        overridden: constructor arguments the caller set on the recipe.

    Returns:
        The kept fit's artifacts.
    """
    with warnings.catch_warnings(record=True) as first_warnings:
        warnings.simplefilter("always")
        first = fit_once()
    kept = first.validation_metrics.get("best_epoch") or 0
    gap = overfit_gap(first.history, kept)
    schema = posterior.observation_schema or {}
    obs_dim = sum(int(block.get("size", 0) or 0) for block in schema.values())
    meta = first.trainer_metadata
    n = int(meta.get("n_train", 0)) + int(meta.get("n_val", 0))
    settings = {}
    if gap is not None and gap > OVERFIT_GAP and n > 0:
        settings = regularisation(posterior.parameter_dim, n, max(obs_dim, 1))
        settings = {k: v for k, v in settings.items() if k not in overridden}
    if not settings:
        _replay(first_warnings)
        return first
    before = {k: getattr(posterior, k) for k in settings}
    state = (posterior.model, posterior.training_history)
    for name, value in settings.items():
        setattr(posterior, name, value)
    with warnings.catch_warnings(record=True) as second_warnings:
        warnings.simplefilter("always")
        second = fit_once()
    record = {"first_gap": gap, "settings": settings}
    if _kept_val_loss(second) <= _kept_val_loss(first):
        second.trainer_metadata["recipe_refit"] = {**record, "kept": "regularised"}
        _replay(second_warnings)
        return second
    for name, value in before.items():
        setattr(posterior, name, value)
    posterior.model, posterior.training_history = state
    first.trainer_metadata["recipe_refit"] = {**record, "kept": "first"}
    _replay(first_warnings)
    return first


def _replay(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
