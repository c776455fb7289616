"""The Cannon: a polynomial data-driven model of spectra given stellar labels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from orrery.interface import (
    ArtifactError,
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
from ._poly import n_poly_features, poly_features

__all__ = ["Cannon", "LabelInference"]

_KIND = "orrery.lux.Cannon"


@dataclass(frozen=True)
class LabelInference:
    """Labels inferred by :meth:`Cannon.infer_labels` (NumPy arrays, physical units).

    Attributes:
        labels: best-fit labels, ``(n_spectra, label_size)``.
        covariance: label covariance from the Gauss–Newton Hessian ``(JᵀWJ)⁻¹``,
            ``(n_spectra, label_size, label_size)``.
        chi2: χ² at the best fit with variance ``σ² + s²``, ``(n_spectra,)``.
        converged: whether Levenberg–Marquardt met its tolerance, ``(n_spectra,)``.
    """

    labels: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    converged: np.ndarray

    @property
    def uncertainties(self) -> np.ndarray:
        """One-sigma label uncertainties, ``sqrt(diag(covariance))``."""
        return np.sqrt(np.clip(np.diagonal(self.covariance, axis1=-2, axis2=-1), 0.0, None))


def _clean_output(output, ivar, n_out, name="output"):
    """Validate on the host, then mask on the device.

    Returns device arrays ``(flux, ivar, mask)`` in the default float dtype, where
    bad entries (NaN/inf flux or ivar, ivar <= 0) have flux 0, ivar 0, mask 0.
    """
    dtype = np.dtype(jnp.result_type(float))
    flux = np.asarray(output, dtype=dtype)
    if flux.shape[-1] != n_out:
        raise ShapeError(f"{name}: expected {n_out} columns (output_size), got {flux.shape[-1]}")
    if ivar is None:
        return _mask_bad(jnp.asarray(flux), jnp.ones(flux.shape, dtype))
    ivar_arr = np.asarray(ivar, dtype=dtype)
    if ivar_arr.shape != flux.shape:
        raise ShapeError(
            f"output_ivar: expected the shape of {name} {flux.shape}, got {ivar_arr.shape}"
        )
    if np.any(ivar_arr < 0):
        raise ValueDomainError("output_ivar: expected non-negative inverse variances")
    return _mask_bad(jnp.asarray(flux), jnp.asarray(ivar_arr))


@jax.jit
def _mask_bad(flux, ivar):
    good = jnp.isfinite(flux) & jnp.isfinite(ivar) & (ivar > 0)
    return jnp.where(good, flux, 0.0), jnp.where(good, ivar, 0.0), good.astype(flux.dtype)


@jax.jit
def _noise_var(ivar, mask):
    return jnp.where(mask > 0, 1.0 / jnp.where(mask > 0, ivar, 1.0), 0.0)


@jax.jit
def _test_weights(ivar, mask, s2):
    var = jnp.where(mask > 0, 1.0 / jnp.where(mask > 0, ivar, 1.0), jnp.inf)
    return 1.0 / (var + s2)


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

        Raises:
            NotFittedError: (a ``RuntimeError``) before :meth:`fit`.
        """
        self._check_fitted("predict")
        labels = check_ndim(labels, 2, "labels")
        if labels.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {labels.shape[1]}"
            )
        feats = poly_features(self.scale_labels(labels), self.poly_degree, self.include_bias)
        return feats @ self.coeffs.T

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
        per-pixel maximum of the marginal likelihood in ``s²``, until the scatter
        changes by less than ``tol`` (relative) or ``max_iter`` rounds.

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
            tol: relative tolerance on the scatter between alternations.

        Returns:
            A new fitted :class:`Cannon`.
        """
        check_choice(regularization_type, ("l2", "l1"), "regularization_type")
        labels = check_finite(check_ndim(labels, 2, "labels"), "labels").astype(float)
        if labels.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {labels.shape[1]}"
            )
        output = check_ndim(output, 2, "output")
        if output.shape[0] != labels.shape[0]:
            raise ShapeError(
                f"output: expected {labels.shape[0]} rows (one per labelled star), "
                f"got {output.shape[0]}"
            )
        flux, ivar, good = _clean_output(output, output_ivar, self.output_size)
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

        dtype = jnp.result_type(float)
        np_dtype = np.dtype(dtype)
        feats = poly_features(
            jnp.asarray(((labels - offset) / scale).astype(np_dtype)),
            self.poly_degree,
            self.include_bias,
        )
        y, ivar_j, mask = flux, ivar, good
        known_noise = output_ivar is not None
        noise_var = _noise_var(ivar_j, mask)
        base_w = ivar_j if known_noise else mask
        penalty = np.full(self.n_features, float(regularization))
        if self.include_bias:
            penalty[0] = 0.0
        penalty = jnp.asarray(penalty, dtype)
        allowed_j = jnp.asarray(allowed)

        coeffs, s2, _ = _fit.fit_all(
            feats,
            y,
            mask,
            noise_var,
            base_w,
            penalty,
            allowed_j,
            float(tol),
            reg_type=regularization_type,
            known_noise=known_noise,
            fit_scatter_=bool(fit_scatter),
            max_iter=int(max_iter),
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
            :class:`LabelInference` with physical-unit labels and covariances.
        """
        self._check_fitted("infer_labels")
        check_positive_int(n_starts, "n_starts")
        out_arr = check_ndim(output, (1, 2), "output")
        single = out_arr.ndim == 1
        if single:
            out_arr = np.asarray(out_arr)[None, :]
            if output_ivar is not None:
                output_ivar = np.asarray(output_ivar)[None, :]
        flux, ivar, good = _clean_output(out_arr, output_ivar, self.output_size)
        dtype = jnp.result_type(float)
        s2 = jnp.asarray(self.scatter, dtype) ** 2 if self.scatter is not None else 0.0
        if output_ivar is None:
            weights = good / (1.0 + s2)
        else:
            weights = _test_weights(ivar, good, s2)
        gram, x_lin, h, c, phi_ref = _infer.quadratic_summaries(
            jnp.asarray(self.coeffs, dtype),
            jnp.asarray(flux, dtype),
            weights,
            self.poly_degree,
            self.include_bias,
        )
        n = flux.shape[0]
        first = x_lin
        if initial_labels is not None:
            init = check_ndim(initial_labels, 2, "initial_labels")
            if init.shape != (n, self.label_size):
                raise ShapeError(
                    f"initial_labels: expected shape ({n}, {self.label_size}), got {init.shape}"
                )
            first = self.scale_labels(jnp.asarray(init, dtype))
        starts = [first]
        if n_starts > 1:
            starts.append(jnp.zeros_like(first))
        if n_starts > 2:
            rand = jax.random.uniform(
                jax.random.key(seed), (n_starts - 2, self.label_size), dtype, -1.0, 1.0
            )
            starts.extend(jnp.broadcast_to(r, first.shape) for r in rand)
        starts = jnp.stack(starts, axis=1)
        x, chi2, hess, done = _infer.fit_labels(
            gram,
            h,
            c,
            phi_ref,
            starts,
            self.poly_degree,
            self.include_bias,
            int(max_iter),
            float(xtol),
            float(ftol),
        )
        _, scale = self._offset_scale()
        cov_scaled = jnp.linalg.pinv(hess, hermitian=True)
        cov = cov_scaled * scale[None, :, None] * scale[None, None, :]
        labels = self.unscale_labels(x)
        res = LabelInference(
            labels=np.asarray(labels),
            covariance=np.asarray(cov),
            chi2=np.asarray(chi2),
            converged=np.asarray(done),
        )
        if single:
            res = LabelInference(res.labels[0], res.covariance[0], res.chi2[0], res.converged[0])
        return res

    # ------------------------------------------------------------------ Lux bridge
    def to_transform_sequence(self):
        """A ``TransformSequence`` (PolyFeatureTransform -> LinearTransform) for :class:`Lux`.

        The sequence acts on labels in the Cannon's scaled basis
        (:meth:`scale_labels`); use those as the Lux latents.
        """
        from .transforms import LinearTransform, PolyFeatureTransform, TransformSequence

        return TransformSequence(
            (
                PolyFeatureTransform(degree=self.poly_degree, include_bias=self.include_bias),
                LinearTransform(output_size=self.output_size),
            )
        )

    def get_coeffs_as_transform_pars(self) -> dict[str, Any]:
        """Coefficients as :meth:`to_transform_sequence` parameters: ``{"data": ({}, {"A": θ})}``.

        ``A`` has shape ``(output_size, n_features)``, as ``LinearTransform`` expects.
        """
        self._check_fitted("get_coeffs_as_transform_pars")
        return {"data": ({}, {"A": jnp.asarray(self.coeffs)})}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], metadata: dict | None = None):
        """Save to an ``orrery.interface`` artifact directory (no pickle)."""
        from . import __version__

        arrays = {}
        for name in ("coeffs", "scatter", "label_offset", "label_scale", "censoring_mask"):
            val = getattr(self, name)
            if val is not None:
                arrays[name] = np.asarray(val)
        config = {
            "label_size": self.label_size,
            "output_size": self.output_size,
            "poly_degree": self.poly_degree,
            "include_bias": self.include_bias,
            "regularization": self.regularization,
            "regularization_type": self.regularization_type,
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
        """Load a Cannon written by :meth:`save`."""
        art = load_artifact(path, kind=_KIND)
        cfg = art.config
        try:
            kwargs = {k: jnp.asarray(art.arrays[k]) for k in art.arrays}
            return cls(
                int(cfg["label_size"]),
                int(cfg["output_size"]),
                int(cfg["poly_degree"]),
                bool(cfg["include_bias"]),
                regularization=float(cfg.get("regularization", 0.0)),
                regularization_type=str(cfg.get("regularization_type", "l2")),
                **kwargs,
            )
        except (KeyError, TypeError) as err:
            raise ArtifactError(f"path: the Cannon artifact is incomplete ({err})") from err
