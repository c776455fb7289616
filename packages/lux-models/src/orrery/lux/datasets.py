"""Synthetic surveys with known truth, for examples, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from orrery.interface import (
    ConfigError,
    SeedLike,
    ValueDomainError,
    as_numpy_rng,
    check_fraction,
    check_positive_float,
    check_positive_int,
    close_matches,
)

from ._poly import n_poly_features, term_names

__all__ = ["LABEL_RANGES", "SyntheticSurvey", "synthetic_survey"]

#: Default uniform ranges of the known labels (giant-branch-like stars).
LABEL_RANGES: dict[str, tuple[float, float]] = {
    "teff": (4000.0, 5500.0),
    "logg": (1.0, 3.5),
    "feh": (-1.0, 0.4),
    "alpha": (-0.1, 0.4),
    "vmic": (0.8, 2.0),
}


@dataclass(frozen=True)
class SyntheticSurvey:
    """A synthetic spectroscopic survey drawn from a Cannon-like model.

    The noise-free spectra are ``coeffs @ φ((labels - label_offset) / label_scale)``
    with ``φ`` the polynomial features (bias first); observed spectra add
    intrinsic scatter ``N(0, scatter²)`` per pixel and measurement noise with
    variance ``1 / ivar``. All arrays are NumPy.

    Attributes:
        labels: ``(n_stars, n_labels)`` physical labels.
        spectra: ``(n_stars, n_pixels)`` observed flux (NaN where ``ivar == 0``).
        ivar: ``(n_stars, n_pixels)`` inverse variances (0 marks a bad pixel).
        coeffs: ``(n_pixels, n_features)`` true coefficients in the scaled basis.
        scatter: ``(n_pixels,)`` injected intrinsic scatter.
        label_names: names of the label columns.
        label_offset, label_scale: the scaling used by ``coeffs``.
        poly_degree: the polynomial degree of the truth.
        clean_spectra: ``(n_stars, n_pixels)`` noise-free flux.
    """

    labels: np.ndarray
    spectra: np.ndarray
    ivar: np.ndarray
    coeffs: np.ndarray
    scatter: np.ndarray
    label_names: tuple[str, ...]
    label_offset: np.ndarray
    label_scale: np.ndarray
    poly_degree: int
    clean_spectra: np.ndarray

    @property
    def flux(self) -> np.ndarray:
        """Alias of `spectra`."""
        return self.spectra

    @property
    def n_stars(self) -> int:
        return self.labels.shape[0]

    @property
    def n_pixels(self) -> int:
        return self.spectra.shape[1]

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns of ``coeffs``."""
        return term_names(self.label_names, self.poly_degree, True)

    def true_spectra(self, labels: np.ndarray) -> np.ndarray:
        """Noise-free flux of the true model at any physical labels ``(n, n_labels)``."""
        from itertools import combinations_with_replacement

        x = (np.asarray(labels, float) - self.label_offset) / self.label_scale
        cols = [np.ones(x.shape[0])]
        for d in range(1, self.poly_degree + 1):
            for idx in combinations_with_replacement(range(x.shape[1]), d):
                cols.append(np.prod(x[:, list(idx)], axis=1))
        return np.stack(cols, axis=1) @ self.coeffs.T


def _resolve_ranges(labels) -> tuple[tuple[str, ...], np.ndarray]:
    if isinstance(labels, Mapping):
        names = tuple(str(k) for k in labels)
        ranges = np.array([tuple(map(float, labels[k])) for k in labels], dtype=float)
    else:
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise ConfigError(
                f"labels: expected a sequence of label names or a mapping name -> (low, high), "
                f"got {labels!r}"
            )
        names = tuple(labels)
        rows = []
        for name in names:
            if name not in LABEL_RANGES:
                near = close_matches(str(name), LABEL_RANGES)
                hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
                raise ConfigError(
                    f"labels: unknown label {name!r}; known: {', '.join(LABEL_RANGES)} "
                    f"(or pass a mapping name -> (low, high)){hint}"
                )
            rows.append(LABEL_RANGES[name])
        ranges = np.array(rows, dtype=float)
    if len(names) == 0:
        raise ConfigError("labels: expected at least one label")
    if np.any(ranges[:, 1] <= ranges[:, 0]):
        raise ValueDomainError("labels: every range must have low < high")
    return names, ranges


def synthetic_survey(
    n_stars: int,
    n_pixels: int,
    *,
    labels: Sequence[str] | Mapping[str, tuple[float, float]] = ("teff", "logg", "feh"),
    snr: float = 100.0,
    intrinsic_scatter: float | np.ndarray = 0.01,
    poly_degree: int = 2,
    bad_pixel_fraction: float = 0.0,
    seed: SeedLike = 0,
) -> SyntheticSurvey:
    """Draw a survey of continuum-normalised spectra from a quadratic Cannon model.

    Labels are uniform over realistic ranges (Teff 4000–5500 K, logg 1–3.5,
    [Fe/H] −1…0.4 by default). Each pixel has a continuum level near 1 minus an
    absorption depth, with label dependences of a few per cent; the noise is
    Gaussian with standard deviation ``clean_flux / snr``.

    Args:
        n_stars: number of stars.
        n_pixels: number of pixels.
        labels: label names from `LABEL_RANGES`, or a mapping
            ``name -> (low, high)``.
        snr: signal-to-noise ratio per pixel.
        intrinsic_scatter: injected scatter ``s`` (a float, or one per pixel).
        poly_degree: degree of the true polynomial model.
        bad_pixel_fraction: fraction of pixels set to NaN with ``ivar = 0``.
        seed: ``int``, ``numpy.random.Generator`` or None.

    Returns:
        A `SyntheticSurvey`.

    Example:
        >>> s = synthetic_survey(200, 100, seed=1)
        >>> s.labels.shape, s.spectra.shape, s.coeffs.shape
        ((200, 3), (200, 100), (100, 10))
    """
    n_stars = check_positive_int(n_stars, "n_stars")
    n_pixels = check_positive_int(n_pixels, "n_pixels")
    poly_degree = check_positive_int(poly_degree, "poly_degree")
    snr = check_positive_float(snr, "snr")
    bad_pixel_fraction = check_fraction(
        bad_pixel_fraction, "bad_pixel_fraction", include_zero=True, include_one=False
    )
    scatter = np.broadcast_to(np.asarray(intrinsic_scatter, float), (n_pixels,)).copy()
    if np.any(~np.isfinite(scatter)) or np.any(scatter < 0):
        raise ValueDomainError("intrinsic_scatter: expected finite non-negative values")
    rng = as_numpy_rng(seed)
    names, ranges = _resolve_ranges(labels)
    n_labels = len(names)
    lab = rng.uniform(ranges[:, 0], ranges[:, 1], size=(n_stars, n_labels))
    offset = ranges.mean(axis=1)
    half = 0.5 * (ranges[:, 1] - ranges[:, 0])

    k = n_poly_features(n_labels, poly_degree, True)
    coeffs = np.empty((n_pixels, k))
    depth = rng.uniform(0.0, 0.5, size=n_pixels) * (rng.uniform(size=n_pixels) < 0.7)
    coeffs[:, 0] = 1.0 - depth
    # label sensitivity grows with line depth, as for real absorption lines
    sens = 0.01 + depth
    coeffs[:, 1 : 1 + n_labels] = rng.normal(0, 0.1, (n_pixels, n_labels)) * sens[:, None]
    coeffs[:, 1 + n_labels :] = rng.normal(0, 0.03, (n_pixels, k - 1 - n_labels)) * sens[:, None]

    survey = SyntheticSurvey(
        labels=lab,
        spectra=np.empty(0),
        ivar=np.empty(0),
        coeffs=coeffs,
        scatter=scatter,
        label_names=names,
        label_offset=offset,
        label_scale=half,
        poly_degree=poly_degree,
        clean_spectra=np.empty(0),
    )
    clean = survey.true_spectra(lab)
    sigma = np.abs(clean) / snr + 1e-6
    flux = clean + rng.normal(size=clean.shape) * scatter[None, :]
    flux = flux + rng.normal(size=clean.shape) * sigma
    ivar = 1.0 / sigma**2
    if bad_pixel_fraction > 0:
        bad = rng.uniform(size=flux.shape) < bad_pixel_fraction
        flux[bad] = np.nan
        ivar[bad] = 0.0
    return SyntheticSurvey(
        labels=lab,
        spectra=flux,
        ivar=ivar,
        coeffs=coeffs,
        scatter=scatter,
        label_names=names,
        label_offset=offset,
        label_scale=half,
        poly_degree=poly_degree,
        clean_spectra=clean,
    )
