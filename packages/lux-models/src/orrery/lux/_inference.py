"""`LabelInference`, what the Cannon's test step returns (in memory, or read back from a
survey's `orrery.lux.survey.LabelStore`); public as `orrery.lux.LabelInference`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelInference"]


@dataclass(frozen=True)
class LabelInference:
    """Labels inferred by `Cannon.infer_labels` (NumPy arrays, physical units).

    Attributes:
        labels: best-fit labels, ``(n_spectra, label_size)``.
        covariance: label covariance from the Gauss–Newton Hessian ``(JᵀWJ)⁻¹``,
            ``(n_spectra, label_size, label_size)``.
        chi2: χ² at the best fit with variance ``σ² + s²``, ``(n_spectra,)``.
        converged: whether Levenberg–Marquardt met its tolerance, ``(n_spectra,)``.
            False also flags a spectrum without enough usable pixels (fewer
            than ``label_size`` pixels with positive weight at pixels the
            model can use) or with a singular Hessian: its labels are NaN
            when no pixel is usable, and its uncertainties are infinite.
    """

    labels: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    converged: np.ndarray

    @property
    def uncertainties(self) -> np.ndarray:
        """One-sigma label uncertainties, ``sqrt(diag(covariance))``."""
        return np.sqrt(np.clip(np.diagonal(self.covariance, axis1=-2, axis2=-1), 0.0, None))
