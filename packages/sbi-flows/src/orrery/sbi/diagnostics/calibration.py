"""Calibration checks of amortized posteriors: SBC ranks, HPD coverage and TARP.

All functions take a posterior satisfying the small duck-typed protocol described
in ``orrery.sbi.diagnostics._protocol`` (``sample_batch``,
``batch_sample_posterior`` or ``sample_posterior``; optionally ``log_prob_batch``
or ``log_prob``), true parameters ``(n, dim)`` drawn from the prior and the
observations simulated from them. For a `ConditionalFlowPosterior` the true
parameters are in physical units (as simulated) and the observations are lists of
`ObservationBlock`s, `EncodedObservation`s or a one-block posterior's raw values,
whatever the posterior's ``parameter_space``; results say so (``space="physical"``).

A posterior may also offer ``diagnostics_support() -> (lower, upper) | None``, the
box outside which it has no mass (`ConditionalFlowPosterior` does). Truths outside
it cannot be covered, ranked or reached, typically because they were given in the
posterior's internal coordinates: each diagnostic then warns (``UserWarning``)
naming how many lie outside, and still returns its result.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import ArrayLike

from orrery.interface import (
    ConfigTypeError,
    ShapeError,
    ValueDomainError,
    as_int_seed,
    check_choice,
    check_finite,
    check_positive_int,
)

from ._protocol import draw_samples, has_log_prob, log_probs, result_space


def _parameters(parameters: ArrayLike, n_obs: int | None = None) -> np.ndarray:
    theta = np.asarray(parameters, dtype=np.float64)
    if theta.ndim == 1:
        theta = theta[:, None]
    if theta.ndim != 2:
        raise ShapeError(f"parameters must have shape (n, dim); got {theta.shape}")
    check_finite(theta, "parameters")
    if n_obs is not None and len(theta) != n_obs:
        raise ShapeError(
            f"parameters and observations must have the same length; got {len(theta)} and {n_obs}"
        )
    return theta


def _warn_outside_support(posterior: Any, theta: np.ndarray, where: str) -> None:
    """Warn, with the count, when true parameters lie outside the posterior's support.

    The support is what ``posterior.diagnostics_support()`` (optional in the
    protocol) returns: a box ``(lower, upper)`` or ``None`` (unbounded).
    """
    support = getattr(posterior, "diagnostics_support", None)
    box = support() if callable(support) else None
    if box is None:
        return
    lower, upper = np.asarray(box, np.float64)
    outside = ~np.all((theta >= lower) & (theta <= upper), axis=1)
    count = int(np.sum(outside))
    if count:
        warnings.warn(
            f"{where}: {count} of {len(theta)} true parameters lie outside the prior's "
            f"support (lower {lower.tolist()}, upper {upper.tolist()}); the posterior has "
            "no mass there, so the result is not a calibration measure. Pass the truths in "
            f"{result_space(posterior)} units as simulated, not the posterior's internal "
            "('cube' or 'unconstrained') coordinates",
            UserWarning,
            stacklevel=3,
        )


def _check_sample_dims(samples: np.ndarray, theta: np.ndarray) -> None:
    if samples.shape[0] != theta.shape[0] or samples.shape[2] != theta.shape[1]:
        raise ShapeError(
            f"posterior samples {samples.shape} do not match parameters {theta.shape} "
            "(expected (n, S, dim) against (n, dim))"
        )


def sbc_ranks(
    posterior: Any,
    parameters: ArrayLike,
    observations: Any,
    *,
    num_posterior_samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Simulation-based-calibration ranks.

    The rank of each true parameter among ``num_posterior_samples`` posterior draws
    (per dimension) is uniform on ``{0, ..., S}`` when the posterior is calibrated.

    Args:
        posterior: see the module docstring for the accepted protocol.
        parameters: ``(n, dim)`` true parameters.
        observations: the ``n`` observations simulated from them.
        num_posterior_samples: draws ``S`` per observation.
        seed: sampling seed.

    Returns:
        Integer ranks ``(n, dim)`` in ``[0, S]``. Ranks do not depend on the space
        (the maps between spaces are increasing in every coordinate).

    Warns:
        UserWarning: some true parameters lie outside the posterior's support
            (the message gives the count).
    """
    check_positive_int(num_posterior_samples, "num_posterior_samples", minimum=1)
    theta = _parameters(parameters, len(observations))
    _warn_outside_support(posterior, theta, "sbc_ranks")
    samples = draw_samples(posterior, observations, num_posterior_samples, as_int_seed(seed))
    _check_sample_dims(samples, theta)
    return np.sum(samples < theta[:, None, :], axis=1)


def sbc_check(
    ranks: ArrayLike, *, num_posterior_samples: int | None = None, num_bins: int | None = None
) -> dict[str, Any]:
    """Per-dimension uniformity tests of SBC ranks.

    Args:
        ranks: ``(n, dim)`` ranks from `sbc_ranks`.
        num_posterior_samples: ``S`` used for the ranks (ranks lie in ``[0, S]``);
            inferred as the largest rank when omitted (pass it when you know it).
        num_bins: histogram bins for the chi-squared test (default
            ``min(20, S + 1, max(2, n // 10))``).

    Returns:
        A dict with arrays over dimensions ``chi2``, ``chi2_pvalue`` (binned
        chi-squared against the exact discrete-uniform expectation) and ``ks``,
        ``ks_pvalue`` (Kolmogorov-Smirnov of ``(rank + 0.5) / (S + 1)`` against
        U(0, 1)), plus ``num_bins`` and ``num_posterior_samples``. Small p-values
        flag miscalibration.
    """
    r = np.asarray(ranks)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or len(r) < 2:
        raise ShapeError(f"ranks must have shape (n >= 2, dim); got {r.shape}")
    if r.dtype.kind not in "iu":
        whole = r.dtype.kind == "f" and bool(np.all(np.isfinite(r) & (r == np.round(r))))
        if not whole:
            raise ValueDomainError(
                f"ranks: expected whole numbers (as sbc_ranks returns), got dtype {r.dtype}"
                + (" with NaN, infinite or fractional values" if r.dtype.kind == "f" else "")
            )
        r = r.astype(np.int64)
    s = int(num_posterior_samples) if num_posterior_samples is not None else int(r.max())
    if r.min() < 0 or r.max() > s:
        raise ValueDomainError(f"ranks must lie in [0, {s}]; got [{r.min()}, {r.max()}]")
    n = len(r)
    bins = num_bins if num_bins is not None else min(20, s + 1, max(2, n // 10))
    check_positive_int(bins, "num_bins", minimum=2)
    bins = min(bins, s + 1)
    bin_of_rank = (np.arange(s + 1) * bins) // (s + 1)
    expected = n * np.bincount(bin_of_rank, minlength=bins) / (s + 1)
    observed = np.stack(
        [np.bincount(bin_of_rank[r[:, j]], minlength=bins) for j in range(r.shape[1])]
    )
    chi2 = np.sum((observed - expected) ** 2 / expected, axis=1)
    from scipy import stats

    chi2_p = stats.chi2.sf(chi2, df=bins - 1)
    u = (r + 0.5) / (s + 1)
    ks = [stats.kstest(u[:, j], "uniform") for j in range(r.shape[1])]
    return {
        "chi2": chi2,
        "chi2_pvalue": chi2_p,
        "ks": np.array([k.statistic for k in ks]),
        "ks_pvalue": np.array([k.pvalue for k in ks]),
        "num_bins": bins,
        "num_posterior_samples": s,
    }


class CoverageResult(NamedTuple):
    """Expected coverage of highest-density regions.

    Attributes:
        levels: nominal credibility levels.
        coverage: fraction of true parameters inside the region of each level.
        stderr: binomial standard error of ``coverage``.
        credibility: per observation, the smallest level whose region contains
            the true parameter (uniform for a calibrated posterior).
        method: ``"log_prob"`` or ``"gaussian"`` (see `expected_coverage`).
        space: the coordinates the regions were built in: ``"physical"`` for a
            `ConditionalFlowPosterior` (physical truths, physical densities),
            ``"as given"`` for other posteriors.
    """

    levels: np.ndarray
    coverage: np.ndarray
    stderr: np.ndarray
    credibility: np.ndarray
    method: str
    space: str = "as given"


def expected_coverage(
    posterior: Any,
    parameters: ArrayLike,
    observations: Any,
    *,
    levels: ArrayLike | None = None,
    num_posterior_samples: int = 1000,
    seed: int = 0,
    method: str = "auto",
) -> CoverageResult:
    """Empirical coverage of the posterior's highest-density regions.

    For each observation the true parameter's credibility is the posterior mass
    of points denser than it, estimated as the fraction of posterior draws with a
    higher density. With ``method="log_prob"`` (the default when the posterior has
    ``log_prob_batch`` or ``log_prob``) densities are the posterior's own; with
    ``method="gaussian"`` (the fallback) regions are the ellipsoids of a Gaussian
    fitted to the draws (ranking by Mahalanobis distance) — exact for Gaussian
    posteriors, an approximation for skewed or multimodal ones. A calibrated
    posterior has ``coverage ≈ levels``; over-confidence shows as coverage below
    the diagonal, under-confidence above.

    Args:
        posterior: see the module docstring for the accepted protocol.
        parameters: ``(n, dim)`` true parameters.
        observations: the ``n`` observations simulated from them.
        levels: credibility levels in (0, 1) (default 0.05, 0.10, ..., 0.95).
        num_posterior_samples: draws per observation.
        seed: sampling seed.
        method: ``"auto"``, ``"log_prob"`` or ``"gaussian"``.

    Returns:
        A `CoverageResult`.

    Warns:
        UserWarning: some true parameters lie outside the posterior's support
            (the message gives the count).
    """
    check_choice(method, ("auto", "log_prob", "gaussian"), "method")
    check_positive_int(num_posterior_samples, "num_posterior_samples", minimum=2)
    lv = np.linspace(0.05, 0.95, 19) if levels is None else np.asarray(levels, dtype=np.float64)
    lv = np.atleast_1d(lv)
    if not np.all((lv > 0) & (lv < 1)):  # NaN fails too
        raise ValueDomainError(f"levels must lie strictly between 0 and 1; got {lv}")
    theta = _parameters(parameters, len(observations))
    _warn_outside_support(posterior, theta, "expected_coverage")
    samples = draw_samples(posterior, observations, num_posterior_samples, as_int_seed(seed))
    _check_sample_dims(samples, theta)
    if method == "auto":
        method = "log_prob" if has_log_prob(posterior) else "gaussian"
    if method == "log_prob":
        if not has_log_prob(posterior):
            raise ConfigTypeError(
                "method='log_prob' needs a posterior with log_prob_batch or log_prob"
            )
        both = np.concatenate([theta[:, None, :], samples], axis=1)
        lp = log_probs(posterior, observations, both)
        credibility = np.mean(lp[:, 1:] > lp[:, :1], axis=1)
    else:
        credibility = _gaussian_credibility(samples, theta)
    coverage = np.mean(credibility[:, None] < lv[None, :], axis=0)
    stderr = np.sqrt(coverage * (1 - coverage) / len(theta))
    return CoverageResult(lv, coverage, stderr, credibility, method, result_space(posterior))


def _gaussian_credibility(samples: np.ndarray, theta: np.ndarray) -> np.ndarray:
    mean = samples.mean(axis=1, keepdims=True)
    centred = samples - mean
    cov = np.einsum("nsi,nsj->nij", centred, centred) / (samples.shape[1] - 1)
    cov = cov + 1e-12 * np.eye(cov.shape[-1]) * np.trace(cov, axis1=1, axis2=2)[:, None, None]
    chol = np.linalg.cholesky(cov)
    z_samples = np.linalg.solve(chol[:, None], centred[..., None])[..., 0]
    z_true = np.linalg.solve(chol, (theta[:, None, :] - mean).transpose(0, 2, 1))
    d_samples = np.sum(z_samples**2, axis=-1)
    d_true = np.sum(z_true**2, axis=1)
    return np.mean(d_samples < d_true, axis=1)


class TarpResult(NamedTuple):
    """TARP expected coverage (Lemos et al. 2023).

    Attributes:
        alpha: credibility levels from 0 to 1.
        ecp: expected coverage probability at each level.
        atc: signed area between ``ecp`` and the diagonal (trapezoid rule); near 0
            when calibrated.
        ks_pvalue: Kolmogorov-Smirnov p-value of the per-observation coverage values
            against U(0, 1).
        f: per observation, the fraction of draws closer to the reference point than
            the true parameter.
        space: the coordinates distances were measured in (``"physical"`` for a
            `ConditionalFlowPosterior`, ``"as given"`` otherwise).
    """

    alpha: np.ndarray
    ecp: np.ndarray
    atc: float
    ks_pvalue: float
    f: np.ndarray
    space: str = "as given"


def tarp(
    posterior: Any,
    parameters: ArrayLike,
    observations: Any,
    *,
    num_posterior_samples: int = 1000,
    seed: int = 0,
    references: ArrayLike | None = None,
    num_bins: int = 30,
    z_score: bool = True,
) -> TarpResult:
    """Tests of Accuracy with Random Points: distance-to-random-point coverage.

    For each observation a reference point is drawn (default: uniform in the
    bounding box of the true parameters); ``f`` is the fraction of posterior draws
    closer to it than the true parameter. The expected coverage probability
    ``ecp(alpha) = mean(f < alpha)`` follows the diagonal for a calibrated posterior
    — a necessary and sufficient condition over all reference distributions.

    Args:
        posterior: see the module docstring for the accepted protocol.
        parameters: ``(n, dim)`` true parameters.
        observations: the ``n`` observations simulated from them.
        num_posterior_samples: draws per observation.
        seed: seed of the sampling and of the reference points.
        references: optional ``(n, dim)`` reference points (in the parameters' units).
        num_bins: number of intervals of the ``alpha`` grid.
        z_score: standardise every dimension by the true parameters' mean and
            standard deviation before measuring distances.

    Returns:
        A `TarpResult`.

    Warns:
        UserWarning: some true parameters lie outside the posterior's support
            (the message gives the count).
    """
    check_positive_int(num_posterior_samples, "num_posterior_samples", minimum=1)
    check_positive_int(num_bins, "num_bins", minimum=1)
    seed = as_int_seed(seed)
    theta = _parameters(parameters, len(observations))
    _warn_outside_support(posterior, theta, "tarp")
    samples = draw_samples(posterior, observations, num_posterior_samples, seed)
    _check_sample_dims(samples, theta)
    if references is None:
        rng = np.random.default_rng(seed)
        lo, hi = theta.min(axis=0), theta.max(axis=0)
        refs = rng.uniform(lo, hi, size=theta.shape)
    else:
        refs = _parameters(references, len(theta))
        if refs.shape != theta.shape:
            raise ShapeError(f"references must have shape {theta.shape}; got {refs.shape}")
    if z_score:
        mean, std = theta.mean(axis=0), theta.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        theta, samples, refs = (theta - mean) / std, (samples - mean) / std, (refs - mean) / std
    d_samples = np.linalg.norm(samples - refs[:, None, :], axis=-1)
    d_true = np.linalg.norm(theta - refs, axis=-1)
    f = np.mean(d_samples < d_true[:, None], axis=1)
    alpha = np.linspace(0.0, 1.0, num_bins + 1)
    ecp = np.mean(f[:, None] < alpha[None, :], axis=0)
    ecp[-1] = 1.0  # every draw set lies within the full ball
    atc = float(np.trapezoid(ecp - alpha, alpha))
    from scipy import stats

    ks_pvalue = float(stats.kstest(f, "uniform").pvalue)
    return TarpResult(alpha, ecp, atc, ks_pvalue, f, result_space(posterior))
