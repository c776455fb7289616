"""Calibration diagnostics for amortized posteriors (SBC, coverage, TARP, C2ST, plots).

The posterior protocol these functions accept is described in
``orrery.sbi.diagnostics._protocol``: ``sample_batch(observations, n_samples, seed)``,
the estimator's ``batch_sample_posterior`` or a per-observation ``sample_posterior``;
``log_prob_batch`` / ``log_prob`` when densities are available.
"""

from .c2st import c2st, posterior_c2st
from .calibration import (
    CoverageResult,
    TarpResult,
    expected_coverage,
    sbc_check,
    sbc_ranks,
    tarp,
)
from .plots import corner, plot_coverage, plot_sbc_ranks

__all__ = [
    "CoverageResult",
    "TarpResult",
    "c2st",
    "corner",
    "expected_coverage",
    "plot_coverage",
    "plot_sbc_ranks",
    "posterior_c2st",
    "sbc_check",
    "sbc_ranks",
    "tarp",
]
