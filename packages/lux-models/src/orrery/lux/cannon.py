"""The Cannon: a polynomial data-driven model of spectra given stellar labels."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import partial
from itertools import product
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from orrery.interface import (
    ArtifactError,
    ConfigError,
    NotFittedError,
    ShapeError,
    ValueDomainError,
    check_choice,
    check_finite,
    check_ndim,
    check_positive_int,
    load_artifact,
    save_artifact,
)

from . import _cannon_fit as _fit
from . import _cannon_infer as _infer
from ._poly import _term_indices, n_poly_features, poly_features
from ._precision import warn_if_narrowed

__all__ = ["Cannon", "LabelInference"]

_KIND = "orrery.lux.Cannon"


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


def _numeric(x, name):
    """``x`` as a NumPy array of a numeric dtype, or a clear error (no silent string parsing)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueDomainError(
            f"{name}: expected a numeric array (float), got dtype {arr.dtype}; "
            "convert text columns to numbers (and decide what their missing values mean) first"
        )
    return arr


def _checked_output(output, ivar, n_out, name="output"):
    """Spectra (and ivar) as device arrays of the default float dtype, shapes checked.

    Bad entries are masked on the device, in the test-step program itself.
    """
    dtype = np.dtype(jnp.result_type(float))
    flux = _numeric(output, name).astype(dtype, copy=False)
    if flux.shape[-1] != n_out:
        raise ShapeError(f"{name}: expected {n_out} columns (output_size), got {flux.shape[-1]}")
    if ivar is None:
        return jnp.asarray(flux), None
    ivar_arr = _numeric(ivar, "output_ivar").astype(dtype, copy=False)
    if ivar_arr.shape != flux.shape:
        raise ShapeError(
            f"output_ivar: expected the shape of {name} {flux.shape}, got {ivar_arr.shape}"
        )
    return jnp.asarray(flux), jnp.asarray(ivar_arr)


@partial(jax.jit, static_argnames=("degree", "include_bias"))
def _scaled_features(labels, offset, scale, degree, include_bias):
    return poly_features((labels - offset) / scale, degree, include_bias)


@jax.jit
def _finite_rows(coeffs, s2):
    return jnp.all(jnp.isfinite(coeffs), axis=1) & jnp.isfinite(s2)


class Cannon(eqx.Module):
    """The Cannon: per-pixel polynomial model of spectra as a function of labels.

    For every output pixel ``p``: ``y_p = θ_p · φ(x) + ε`` with ``ε ~ N(0, σ² + s_p²)``,
    where ``φ`` holds all monomials of the (centred, scaled) labels up to
    ``poly_degree``, ``σ²`` is the measurement variance and ``s_p`` the fitted
    intrinsic scatter.

    Labels are centred on their median and divided by half their 2.5–97.5
    percentile span before the features are formed, so raw effective
    temperatures and metallicities can be mixed; ``coeffs`` are in that scaled
    basis and the scaling is kept in ``label_offset`` / ``label_scale``.

    Args:
        label_size: number of labels (e.g. 3 for Teff, logg, [Fe/H]).
        output_size: number of outputs (e.g. spectral pixels).
        poly_degree: polynomial degree of the features.
        include_bias: whether the features start with a constant term.
        coeffs: fitted coefficients ``(output_size, n_features)`` or None.
        scatter: fitted intrinsic scatter ``s`` per output ``(output_size,)`` or None.
        label_offset, label_scale: the label scaling (identity when None).
        censoring_mask: True where a feature is forbidden at a pixel, or None.
        regularization, regularization_type: the penalty used by ``fit``.
        usable: per output, whether the training data constrained it (seen by at
            least as many stars as it has free coefficients); outputs that are
            not usable have zero coefficients, predict NaN and are ignored by
            ``infer_labels``. None (before ``fit``) means all usable.

    Example:
        >>> from orrery.lux import Cannon
        >>> from orrery.lux.datasets import synthetic_survey
        >>> s = synthetic_survey(300, 50, seed=0)
        >>> cannon = Cannon(3, 50).fit(s.labels, s.spectra, s.ivar)
        >>> result = cannon.infer_labels(s.spectra[:5], s.ivar[:5])
        >>> result.labels.shape
        (5, 3)
    """

    label_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)
    poly_degree: int = eqx.field(static=True, default=2)
    include_bias: bool = eqx.field(static=True, default=True)
    coeffs: Float[Array, "output features"] | None = None
    scatter: Float[Array, " output"] | None = None
    label_offset: Float[Array, " labels"] | None = None
    label_scale: Float[Array, " labels"] | None = None
    censoring_mask: Bool[Array, "output features"] | None = None
    regularization: float = eqx.field(static=True, default=0.0)
    regularization_type: str = eqx.field(static=True, default="l2")
    usable: Bool[Array, " output"] | None = None

    def __check_init__(self):
        check_positive_int(self.label_size, "label_size")
        check_positive_int(self.output_size, "output_size")
        check_positive_int(self.poly_degree, "poly_degree")
        check_choice(self.regularization_type, ("l2", "l1"), "regularization_type")
        if self.coeffs is not None and tuple(self.coeffs.shape) != (
            self.output_size,
            self.n_features,
        ):
            raise ShapeError(
                f"coeffs: expected shape ({self.output_size}, {self.n_features}), "
                f"got {tuple(self.coeffs.shape)}"
            )
        if self.usable is not None and tuple(self.usable.shape) != (self.output_size,):
            raise ShapeError(
                f"usable: expected shape ({self.output_size},), got {tuple(self.usable.shape)}"
            )

    # ------------------------------------------------------------------ basics
    @property
    def n_features(self) -> int:
        """Number of features: ``C(label_size + degree, degree)``, minus 1 without bias."""
        return n_poly_features(self.label_size, self.poly_degree, self.include_bias)

    @property
    def is_fitted(self) -> bool:
        """Whether coefficients are available."""
        return self.coeffs is not None

    def _check_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"Cannon.{what}: the model is not fitted; call fit() first")

    def get_features(self, labels: Float[Array, "n labels"]) -> Float[Array, "n features"]:
        """Expand labels (as given, no scaling) into polynomial features.

        Args:
            labels: ``(n, label_size)``.

        Returns:
            ``(n, n_features)``: bias, then degree-1 terms, then degree-2 products
            in ``itertools.combinations_with_replacement`` order, and so on.
        """
        labels = jnp.asarray(check_ndim(labels, 2, "labels"))
        if labels.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {labels.shape[1]}"
            )
        return poly_features(labels, self.poly_degree, self.include_bias)

    def _offset_scale(self):
        dtype = jnp.result_type(float)
        off = (
            jnp.zeros(self.label_size, dtype)
            if self.label_offset is None
            else jnp.asarray(self.label_offset, dtype)
        )
        scale = (
            jnp.ones(self.label_size, dtype)
            if self.label_scale is None
            else jnp.asarray(self.label_scale, dtype)
        )
        return off, scale

    def scale_labels(self, labels: Float[Array, "n labels"]) -> Float[Array, "n labels"]:
        """Physical labels -> the internal scaled basis used by ``coeffs``."""
        off, scale = self._offset_scale()
        return (jnp.asarray(labels) - off) / scale

    def unscale_labels(self, scaled: Float[Array, "n labels"]) -> Float[Array, "n labels"]:
        """Scaled-basis labels -> physical labels."""
        off, scale = self._offset_scale()
        return jnp.asarray(scaled) * scale + off

    def predict(self, labels: Float[Array, "n labels"]) -> Float[Array, "n output"]:
        """Predict outputs for physical labels ``(n, label_size)`` -> ``(n, output_size)``.

        Outputs the training data did not constrain (``usable`` False) are NaN.

        Raises:
            NotFittedError: (a ``RuntimeError``) before ``fit``.
        """
        self._check_fitted("predict")
        labels = check_ndim(labels, 2, "labels")
        if labels.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {labels.shape[1]}"
            )
        feats = poly_features(self.scale_labels(labels), self.poly_degree, self.include_bias)
        pred = feats @ self.coeffs.T
        if self.usable is not None:
            pred = jnp.where(self.usable, pred, jnp.nan)
        return pred

    # ------------------------------------------------------------------ training
    def fit(
        self,
        labels: Float[Array, "n labels"],
        output: Float[Array, "n output"],
        output_ivar: Float[Array, "n output"] | None = None,
        regularization: float = 0.0,
        *,
        regularization_type: str = "l2",
        censoring_mask: Bool[Array, "output features"] | None = None,
        fit_scatter: bool = True,
        max_iter: int = 8,
        tol: float = 1e-4,
    ) -> Cannon:
        """Fit coefficients and intrinsic scatter; return a new fitted Cannon.

        Alternates, vectorised over pixels, (1) the penalised weighted least
        squares solve for θ with weights ``1 / (σ² + s²)`` and (2) the
        per-pixel maximum of the marginal likelihood in ``s²``, until the
        variance ``s² + σ²`` (``σ²`` the pixel's mean measurement variance)
        changes by less than ``tol`` (relative) or ``max_iter`` rounds. A pixel
        seen by fewer stars than it has free coefficients is marked unusable
        (``usable``), with a warning; the fit refuses (``ValueDomainError``)
        when no pixel is usable or a usable pixel's coefficients are not finite.

        Args:
            labels: training labels in physical units, ``(n_stars, label_size)``.
            output: training outputs (flux), ``(n_stars, output_size)``; NaN
                entries are ignored when their inverse variance is 0 (or any NaN
                entry is treated as missing).
            output_ivar: inverse variances of ``output``; None means unknown
                noise, in which case ``scatter`` is the full residual scatter.
            regularization: penalty strength λ on all non-bias coefficients:
                ``λ Σ θ²`` (``"l2"``) or ``λ Σ |θ|`` (``"l1"``), added to χ².
            regularization_type: ``"l2"`` (closed form) or ``"l1"`` (proximal).
            censoring_mask: optional boolean ``(output_size, n_features)``; True
                forbids that feature at that pixel (its coefficient is fixed to 0).
            fit_scatter: fit the intrinsic scatter (otherwise ``s = 0``).
            max_iter: maximum number of coefficient/scatter alternations.
            tol: relative tolerance on `s² + σ²` between alternations.

        Returns:
            A new fitted `Cannon`; its `usable` marks the outputs the data
            constrained.

        Raises:
            ShapeError: for arrays of the wrong shape.
            ValueDomainError: for non-numeric (e.g. text) labels or outputs,
                non-finite labels, negative or all-zero inverse variances, no
                usable pixel, or non-finite fitted coefficients.

        Warns:
            UserWarning: counting the pixels marked unusable, and pixels whose
                scatter did not converge.
        """
        check_choice(regularization_type, ("l2", "l1"), "regularization_type")
        labels = np.asarray(_numeric(labels, "labels"), dtype=float)
        labels = check_finite(check_ndim(labels, 2, "labels"), "labels")
        if labels.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {labels.shape[1]}"
            )
        output = check_ndim(_numeric(output, "output"), 2, "output")
        if output.shape[0] != labels.shape[0]:
            raise ShapeError(
                f"output: expected {labels.shape[0]} rows (one per labelled star), "
                f"got {output.shape[0]}"
            )
        dtype = jnp.result_type(float)
        np_dtype = np.dtype(dtype)
        if output.shape[1] != self.output_size:
            raise ShapeError(
                f"output: expected {self.output_size} columns (output_size), got {output.shape[1]}"
            )
        flux = output.astype(np_dtype, copy=False)
        ivar = None
        if output_ivar is not None:
            ivar = _numeric(output_ivar, "output_ivar").astype(np_dtype, copy=False)
            if ivar.shape != flux.shape:
                raise ShapeError(
                    f"output_ivar: expected the shape of output {flux.shape}, got {ivar.shape}"
                )
        if not np.isfinite(regularization) or regularization < 0:
            raise ValueDomainError(f"regularization: expected >= 0, got {regularization}")
        n_stars = labels.shape[0]
        if n_stars < self.n_features and regularization == 0:
            raise ValueDomainError(
                f"labels: {n_stars} stars cannot constrain {self.n_features} coefficients "
                "per pixel without regularization"
            )
        check_positive_int(max_iter, "max_iter")

        offset = np.median(labels, axis=0)
        lo, hi = np.percentile(labels, [2.5, 97.5], axis=0)
        scale = 0.5 * (hi - lo)
        if np.any(scale <= 0):
            bad = int(np.argmax(scale <= 0))
            raise ValueDomainError(
                f"labels: column {bad} has zero spread; it cannot be used as a label"
            )
        if censoring_mask is None:
            allowed = np.ones((self.output_size, self.n_features), bool)
        else:
            cm = np.asarray(censoring_mask, dtype=bool)
            if cm.shape != (self.output_size, self.n_features):
                raise ShapeError(
                    f"censoring_mask: expected shape ({self.output_size}, {self.n_features}), "
                    f"got {cm.shape}"
                )
            allowed = ~cm

        feats = _scaled_features(
            jnp.asarray(labels, dtype),
            jnp.asarray(offset, dtype),
            jnp.asarray(scale, dtype),
            self.poly_degree,
            self.include_bias,
        )
        penalty = np.full(self.n_features, float(regularization))
        if self.include_bias:
            penalty[0] = 0.0

        flux_j = jnp.asarray(flux)
        if ivar is None:  # unit weights on the entries that are there
            flux_j, ivar_j = _fit.clean_inputs(flux_j, None)
            count, sum_var, _, _ = _fit.scan_inputs(flux_j, ivar_j)
        else:
            ivar_j = jnp.asarray(ivar)
            count, sum_var, negative, dirty = _fit.scan_inputs(flux_j, ivar_j)
            if bool(negative):
                raise ValueDomainError("output_ivar: expected non-negative inverse variances")
            if bool(dirty):  # only then a cleaned copy; clean data are used as given
                flux_j, ivar_j = _fit.clean_inputs(flux_j, ivar_j)
                count, sum_var, _, _ = _fit.scan_inputs(flux_j, ivar_j)
        coeffs, s2, usable, scatter_ok = _fit.fit_all(
            feats,
            flux_j,
            ivar_j,
            count,
            sum_var,
            jnp.asarray(penalty, dtype),
            jnp.asarray(allowed),
            jnp.asarray(tol, dtype),
            reg_type=regularization_type,
            known_noise=ivar is not None,
            fit_scatter_=bool(fit_scatter),
            max_iter=int(max_iter),
        )
        usable_np = np.asarray(usable)
        finite = np.asarray(_finite_rows(coeffs, s2))
        n_unusable = int(np.sum(~usable_np))
        if not np.any(usable_np):
            raise ValueDomainError(
                "output_ivar: every inverse variance is zero (or NaN), or no pixel is seen "
                f"by at least {self.n_features} stars with a finite flux and a positive "
                "inverse variance (and labels that constrain it); there is nothing to fit"
            )
        if not np.all(finite[usable_np]):
            bad = np.flatnonzero(usable_np & ~finite)
            raise ValueDomainError(
                f"output: the fit gave non-finite coefficients at {bad.size} pixel(s) "
                f"(first: {bad[:5].tolist()}); check those pixels' labels and data"
            )
        if n_unusable:
            warnings.warn(
                f"Cannon.fit: {n_unusable} of {self.output_size} pixels have too little "
                f"information: seen by fewer stars than the {self.n_features} coefficients "
                "they need (or by none), or by stars whose labels leave the fit singular; "
                "they are marked unusable (Cannon.usable), predict NaN and are ignored by "
                "infer_labels",
                UserWarning,
                stacklevel=2,
            )
        n_slow = int(np.sum(~np.asarray(scatter_ok) & usable_np))
        if n_slow:
            warnings.warn(
                f"Cannon.fit: the intrinsic scatter of {n_slow} pixel(s) did not converge",
                UserWarning,
                stacklevel=2,
            )

        return Cannon(
            self.label_size,
            self.output_size,
            self.poly_degree,
            self.include_bias,
            coeffs=coeffs,
            scatter=jnp.sqrt(s2),
            label_offset=jnp.asarray(offset, dtype),
            label_scale=jnp.asarray(scale, dtype),
            censoring_mask=None if censoring_mask is None else jnp.asarray(~allowed),
            regularization=float(regularization),
            regularization_type=regularization_type,
            usable=usable,
        )

    # ------------------------------------------------------------------ test step
    def infer_labels(
        self,
        output: Float[Array, "n output"],
        output_ivar: Float[Array, "n output"] | None = None,
        *,
        n_starts: int = 4,
        initial_labels: Float[Array, "n labels"] | None = None,
        max_iter: int = 100,
        xtol: float = 1e-6,
        ftol: float = 1e-7,
        seed: int = 0,
    ) -> LabelInference:
        """Infer labels for many spectra at once (the test step).

        Levenberg–Marquardt on χ² with variance ``σ² + s²``, vmapped over spectra
        and over several starting points (the linear-algebra guess, the training
        median, then fixed pseudo-random points inside the training label range);
        the start with the lowest χ² wins. Pixels with zero ivar or NaN flux are
        ignored.

        Args:
            output: ``(n, output_size)`` or ``(output_size,)`` spectra.
            output_ivar: inverse variances, same shape; None means unit weights.
            n_starts: starting points per spectrum (>= 1).
            initial_labels: optional physical-unit start per spectrum, used in
                place of the first (linear-algebra) start.
            max_iter: maximum LM iterations per start.
            xtol: stop when the step (scaled label units) is below this.
            ftol: stop when the relative χ² decrease is below this.
            seed: seed of the pseudo-random starts.

        Returns:
            `LabelInference` with physical-unit labels and covariances. A
            spectrum without enough usable pixels comes back with
            ``converged`` False and infinite uncertainties (NaN labels and χ²
            when no pixel is usable).

        Raises:
            NotFittedError: (a ``RuntimeError``) before ``fit``.
            ShapeError: for arrays of the wrong shape.
            ValueDomainError: for negative inverse variances or text input.
        """
        self._check_fitted("infer_labels")
        check_positive_int(n_starts, "n_starts")
        out_arr = check_ndim(output, (1, 2), "output")
        single = out_arr.ndim == 1
        if single:
            out_arr = np.asarray(out_arr)[None, :]
            if output_ivar is not None:
                output_ivar = np.asarray(output_ivar)[None, :]
        dtype = jnp.result_type(float)
        flux, ivar = _checked_output(out_arr, output_ivar, self.output_size)
        n = flux.shape[0]
        first = None
        if initial_labels is not None:
            init = check_ndim(initial_labels, 2, "initial_labels")
            if init.shape != (n, self.label_size):
                raise ShapeError(
                    f"initial_labels: expected shape ({n}, {self.label_size}), got {init.shape}"
                )
            first = self.scale_labels(jnp.asarray(init, dtype))
        offset, scale = self._offset_scale()
        s2 = jnp.zeros(self.output_size, dtype) if self.scatter is None else self.scatter**2
        usable = jnp.ones(self.output_size, bool) if self.usable is None else self.usable
        labels, cov, chi2, done, n_used, singular, negative = _infer.infer_all(
            jnp.asarray(self.coeffs, dtype),
            jnp.asarray(s2, dtype),
            jnp.asarray(usable),
            offset,
            scale,
            flux,
            ivar,
            first,
            int(seed),
            self.poly_degree,
            self.include_bias,
            int(n_starts),
            int(max_iter),
            float(xtol),
            float(ftol),
        )
        if bool(negative):
            raise ValueDomainError("output_ivar: expected non-negative inverse variances")
        labels, cov, chi2 = np.array(labels), np.array(cov), np.array(chi2)
        n_used = np.asarray(n_used)
        # a spectrum that cannot pin its labels is flagged, never answered with certainty
        no_data = n_used == 0
        weak = (n_used < self.label_size) | np.asarray(singular)
        labels[no_data] = np.nan
        chi2[no_data] = np.nan
        cov[weak] = np.where(np.eye(self.label_size, dtype=bool), np.inf, np.nan)
        res = LabelInference(
            labels=labels,
            covariance=cov,
            chi2=chi2,
            converged=np.asarray(done) & ~weak,
        )
        if single:
            res = LabelInference(res.labels[0], res.covariance[0], res.chi2[0], res.converged[0])
        return res

    # ------------------------------------------------------------------ Lux bridge
    def to_transform_sequence(self):
        """A ``TransformSequence`` (PolyFeatureTransform -> LinearTransform) for ``Lux``.

        With the parameters of ``get_coeffs_as_transform_pars`` the sequence
        maps labels in physical units (as ``predict`` takes them) to the outputs.
        Its ``LinearTransform`` can also be fitted afresh by ``Lux``; then the
        latents are whatever labels the user feeds it (``scale_labels`` gives
        the Cannon's well-conditioned basis).
        """
        from .transforms import LinearTransform, PolyFeatureTransform, TransformSequence

        return TransformSequence(
            (
                PolyFeatureTransform(degree=self.poly_degree, include_bias=self.include_bias),
                LinearTransform(output_size=self.output_size),
            )
        )

    def _raw_label_coeffs(self) -> np.ndarray:
        """Coefficients for features of raw labels: ``θ_raw = θ T`` with ``φ(scaled) = T φ(raw)``.

        Each scaled monomial ``Π_j (x_j - o_j) / s_j`` is expanded exactly (in
        float64) into monomials of the raw labels, so ``θ_raw · φ(x)`` equals
        ``θ · φ((x - o) / s)`` as a polynomial.
        """
        off, scale = (np.asarray(a, np.float64) for a in self._offset_scale())
        a, b = 1.0 / scale, -off / scale
        terms = [()] + [
            tuple(int(v) for v in row)
            for idx in _term_indices(self.label_size, self.poly_degree)
            for row in idx
        ]
        index = {t: n for n, t in enumerate(terms)}
        full = np.zeros((len(terms), len(terms)))
        for col, term in enumerate(terms):
            for pick in product((False, True), repeat=len(term)):
                coef = np.prod([a[j] if p else b[j] for p, j in zip(pick, term, strict=True)])
                raw = tuple(sorted(j for p, j in zip(pick, term, strict=True) if p))
                full[col, index[raw]] += coef
        theta = np.asarray(self.coeffs, np.float64)
        if self.include_bias:
            return theta @ full
        if np.any(full[1:, 0] != 0.0):
            raise ConfigError(
                "get_coeffs_as_transform_pars: a Cannon without a bias term cannot express "
                "its label offset through PolyFeatureTransform -> LinearTransform; fit with "
                "include_bias=True"
            )
        return theta @ full[1:, 1:]

    def get_coeffs_as_transform_pars(self) -> dict[str, Any]:
        """Coefficients as ``to_transform_sequence`` parameters: ``{"data": [{}, {"A": A}]}``.

        The label scaling is folded into ``A`` (shape ``(output_size,
        n_features)``, as ``LinearTransform`` expects), so the sequence takes
        labels in physical units::

            lux.register_output("flux", cannon.to_transform_sequence())
            lux.predict_outputs(labels, {"flux": cannon.get_coeffs_as_transform_pars()})

        reproduces ``cannon.predict(labels)`` (up to round-off; outputs that are
        not ``usable``, NaN in ``predict``, come out as 0). ``"data"`` is a list
        with one dict per transform of the sequence (the feature expansion has no
        parameters).

        Raises:
            NotFittedError: (a ``RuntimeError``) before ``fit``.
            ConfigError: for a Cannon without a bias term and a label offset.
        """
        self._check_fitted("get_coeffs_as_transform_pars")
        dtype = jnp.asarray(self.coeffs).dtype
        return {"data": [{}, {"A": jnp.asarray(self._raw_label_coeffs(), dtype)}]}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], metadata: dict | None = None):
        """Save to an ``orrery.interface`` artifact directory (no pickle).

        Arrays keep their dtype (a Cannon fitted under ``jax_enable_x64`` is saved
        in float64).
        """
        from . import __version__

        arrays = {}
        names = ("coeffs", "scatter", "label_offset", "label_scale", "censoring_mask", "usable")
        for name in names:
            val = getattr(self, name)
            if val is not None:
                arrays[name] = np.asarray(val)
        if self.is_fitted and self.usable is None:
            arrays["usable"] = np.ones(self.output_size, bool)
        config = {
            "label_size": self.label_size,
            "output_size": self.output_size,
            "poly_degree": self.poly_degree,
            "include_bias": self.include_bias,
            "regularization": self.regularization,
            "regularization_type": self.regularization_type,
            "fitted": self.is_fitted,
            "censored": self.censoring_mask is not None,
        }
        return save_artifact(
            path,
            kind=_KIND,
            config=config,
            arrays=arrays,
            metadata=metadata,
            producer={"distribution": "lux-models", "version": __version__},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cannon:
        """Load a Cannon written by ``save``.

        Every array a fitted Cannon needs (coefficients, scatter, label scaling,
        usable mask) must be present with its dtype kind and shape; float arrays
        keep their saved dtype, and a float64 Cannon loaded while
        ``jax_enable_x64`` is off warns that it becomes float32.

        Raises:
            ArtifactError: naming the file and the entry that is missing, of the
                wrong type or shape, or not finite.
        """
        art = load_artifact(path, kind=_KIND)
        label_size = art.config_value("label_size", int)
        output_size = art.config_value("output_size", int)
        poly_degree = art.config_value("poly_degree", int)
        include_bias = art.config_value("include_bias", bool)
        regularization = art.config_value("regularization", float, default=0.0)
        regularization_type = art.config_value("regularization_type", str, default="l2")
        fitted = art.config_value("fitted", bool, default="coeffs" in art.arrays)
        censored = art.config_value("censored", bool, default="censoring_mask" in art.arrays)
        for key, val in (
            ("label_size", label_size),
            ("output_size", output_size),
            ("poly_degree", poly_degree),
        ):
            if val < 1:
                raise ArtifactError(f"{art.path}/metadata.json: config {key!r} must be >= 1")
        if regularization_type not in ("l2", "l1") or not np.isfinite(regularization):
            raise ArtifactError(
                f"{art.path}/metadata.json: config regularization / regularization_type "
                f"is invalid ({regularization!r}, {regularization_type!r})"
            )
        k = n_poly_features(label_size, poly_degree, include_bias)
        kwargs: dict[str, Any] = {}
        if fitted:
            shapes = {
                "coeffs": (output_size, k),
                "scatter": (output_size,),
                "label_offset": (label_size,),
                "label_scale": (label_size,),
            }
            floats = {name: art.array(name, kind="f", shape=sh) for name, sh in shapes.items()}
            usable = art.array("usable", kind="b", shape=(output_size,))
            for name, arr in floats.items():
                if not np.all(np.isfinite(arr)):
                    raise ArtifactError(f"{art.path}/arrays.npz: array {name!r} is not finite")
            if np.any(floats["label_scale"] <= 0) or np.any(floats["scatter"] < 0):
                raise ArtifactError(
                    f"{art.path}/arrays.npz: label_scale must be > 0 and scatter >= 0"
                )
            warn_if_narrowed(
                [n for n, a in floats.items() if a.dtype.itemsize > 4],
                f"Cannon.load: {art.path}",
                stacklevel=2,
            )
            kwargs = {name: jnp.asarray(arr) for name, arr in floats.items()}
            kwargs["usable"] = jnp.asarray(usable)
        if censored:
            cm = art.array("censoring_mask", kind="b", shape=(output_size, k))
            kwargs["censoring_mask"] = jnp.asarray(cm)
        return cls(
            label_size,
            output_size,
            poly_degree,
            include_bias,
            regularization=regularization,
            regularization_type=regularization_type,
            **kwargs,
        )
