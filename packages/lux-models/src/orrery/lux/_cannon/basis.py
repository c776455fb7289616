"""The Cannon's coefficients in two bases: scaled labels (the fit's) and raw labels (upstream's).

The fit works with labels centred and scaled, ``z = (x - o) / s``, which keeps
its normal equations well conditioned; users (and pollux) read coefficients
against features of the labels as given, ``θ_raw · φ(x)``. A monomial of an
affine map of the labels is a polynomial in them, so the two are exactly
related by a ``k × k`` matrix, formed here in float64.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from orrery.interface import ConfigError

from .._poly import _term_indices


def _expansion(a: np.ndarray, b: np.ndarray, label_size: int, degree: int) -> np.ndarray:
    """``M`` with ``φ(a ∘ x + b) = M φ(x)`` for the features with a bias term (float64)."""
    terms = [()] + [
        tuple(int(v) for v in row) for idx in _term_indices(label_size, degree) for row in idx
    ]
    index = {t: n for n, t in enumerate(terms)}
    full = np.zeros((len(terms), len(terms)))
    for col, term in enumerate(terms):
        for pick in product((False, True), repeat=len(term)):
            coef = np.prod([a[j] if p else b[j] for p, j in zip(pick, term, strict=True)])
            raw = tuple(sorted(j for p, j in zip(pick, term, strict=True) if p))
            full[col, index[raw]] += coef
    return full


def change_basis(
    theta, a, b, degree: int, include_bias: bool, what: str = "coefficients"
) -> np.ndarray:
    """Coefficients ``θ'`` with ``θ' · φ(x) = θ · φ(a ∘ x + b)`` (float64, exact expansion).

    Raises:
        ConfigError: without a bias term when ``b`` is not zero (a polynomial
            without a constant cannot absorb a shift of its variables).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    full = _expansion(a, b, a.size, degree)
    theta = np.asarray(theta, np.float64)
    if include_bias:
        return theta @ full
    if np.any(full[1:, 0] != 0.0):
        raise ConfigError(
            f"{what}: a Cannon without a bias term cannot move its label offset into "
            "the raw-label basis; fit with include_bias=True"
        )
    return theta @ full[1:, 1:]


def raw_from_scaled(theta, offset, scale, degree: int, include_bias: bool, what: str):
    """Raw-label coefficients from scaled-label ones: ``z = x / s - o / s``."""
    offset, scale = np.asarray(offset, np.float64), np.asarray(scale, np.float64)
    return change_basis(theta, 1.0 / scale, -offset / scale, degree, include_bias, what)


def scaled_from_raw(theta, offset, scale, degree: int, include_bias: bool, what: str):
    """Scaled-label coefficients from raw-label ones: ``x = s z + o``."""
    return change_basis(theta, scale, offset, degree, include_bias, what)
