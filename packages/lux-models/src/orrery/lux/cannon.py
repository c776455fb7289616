"""The Cannon: a polynomial data-driven model of spectra given stellar labels."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import Executor
from functools import partial
from typing import TYPE_CHECKING, Any, overload

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from orrery.interface import (
    ConfigError,
    NotFittedError,
    ShapeError,
    ValueDomainError,
    check_choice,
    check_ndim,
    check_nonnegative_float,
    check_positive_int,
)

from ._cannon import basis as _basis
from ._cannon import fit as _fit
from ._cannon import io as _io
from ._cannon import label as _label
from ._cannon import stream as _stream
from ._cannon import train as _train
from ._cannon import validate as _validate
from ._inference import LabelInference
from ._poly import feature_exponents, n_poly_features, poly_features, poly_features_host
from ._source import SpectraSource

if TYPE_CHECKING:
    from ._survey.spectra import LabelStore

__all__ = ["Cannon", "LabelInference"]


class Cannon(eqx.Module):
    """The Cannon: per-pixel polynomial model of spectra as a function of labels.

    For every output pixel ``p``: ``y_p = θ_p · φ(x) + ε`` with ``ε ~ N(0, σ² + s_p²)``,
    where ``φ`` holds all monomials of the (centred, scaled) labels up to
    ``poly_degree``, ``σ²`` is the measurement variance and ``s_p`` the fitted
    intrinsic scatter.

    For the fit, labels are centred on their median and divided by half their
    2.5–97.5 percentile span before the features are formed, so raw effective
    temperatures and metallicities can be mixed and the normal equations stay
    well conditioned (without a bias term they are only divided, not centred).
    The coefficients the fit solves for, in that scaled basis, are
    ``scaled_coeffs`` (with the scaling in ``label_offset`` / ``label_scale``);
    ``coeffs`` are the same model in the basis of the labels as given, as in
    pollux: ``get_features(labels) @ coeffs.T`` is the prediction. ``predict``
    and ``infer_labels`` work in the scaled basis.

    Args:
        label_size: number of labels (e.g. 3 for Teff, logg, [Fe/H]).
        output_size: number of outputs (e.g. spectral pixels).
        poly_degree: polynomial degree of the features.
        include_bias: whether the features start with a constant term.
        coeffs: coefficients ``(output_size, n_features)`` against the features of
            the labels as given (``get_features``), or None.
        scatter: fitted intrinsic scatter ``s`` per output ``(output_size,)`` or None.
        label_offset, label_scale: the label scaling (identity when None).
        censoring_mask: True where a feature is forbidden at a pixel, or None.
        regularization, regularization_type: the penalty used by ``fit``.
        usable: per output, whether the training data constrained it (seen by at
            least as many stars as it has free coefficients); outputs that are
            not usable have zero coefficients, predict NaN and are ignored by
            ``infer_labels``. None (before ``fit``) means all usable.
        scaled_coeffs: the same coefficients against the features of the scaled
            labels (``scale_labels``), as the fit solves them; None means they are
            derived from ``coeffs`` (exactly, in float64). ``fit`` and ``load``
            set both.

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
    scaled_coeffs: Float[Array, "output features"] | None = None

    def __check_init__(self):
        check_positive_int(self.label_size, "label_size")
        check_positive_int(self.output_size, "output_size")
        check_positive_int(self.poly_degree, "poly_degree")
        check_choice(self.regularization_type, ("l2", "l1"), "regularization_type")
        for name in ("coeffs", "scaled_coeffs"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (self.output_size, self.n_features):
                raise ShapeError(
                    f"{name}: expected shape ({self.output_size}, {self.n_features}), "
                    f"got {tuple(value.shape)}"
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

    def _model_coeffs(self) -> Float[Array, "output features"]:
        """The coefficients in the scaled basis (``scaled_coeffs``, else from ``coeffs``)."""
        if self.scaled_coeffs is not None:
            return self.scaled_coeffs
        off, scale = self._offset_scale()
        theta = _basis.scaled_from_raw(
            self.coeffs, off, scale, self.poly_degree, self.include_bias, "coeffs"
        )
        return jnp.asarray(theta, jnp.asarray(self.coeffs).dtype)

    def scale_labels(self, labels: Float[ArrayLike, "n labels"]) -> Float[Array, "n labels"]:
        """Physical labels -> the internal scaled basis used by ``coeffs``."""
        off, scale = self._offset_scale()
        return (jnp.asarray(labels) - off) / scale

    def unscale_labels(self, scaled: Float[ArrayLike, "n labels"]) -> Float[Array, "n labels"]:
        """Scaled-basis labels -> physical labels."""
        off, scale = self._offset_scale()
        return jnp.asarray(scaled) * scale + off

    def predict(self, labels: Float[ArrayLike, "n labels"]) -> Float[Array, "n output"]:
        """Predict outputs for physical labels ``(n, label_size)`` -> ``(n, output_size)``.

        Outputs the training data did not constrain (``usable`` False) are NaN.

        Raises:
            NotFittedError: (a ``RuntimeError``) before ``fit``.
        """
        self._check_fitted("predict")
        checked = check_ndim(labels, 2, "labels")
        if checked.shape[1] != self.label_size:
            raise ShapeError(
                f"labels: expected {self.label_size} columns (label_size), got {checked.shape[1]}"
            )
        feats = poly_features(self.scale_labels(checked), self.poly_degree, self.include_bias)
        pred = feats @ self._model_coeffs().T
        if self.usable is not None:
            pred = jnp.where(self.usable, pred, jnp.nan)
        return pred

    # ------------------------------------------------------------------ training
    def fit(
        self,
        labels: Float[ArrayLike, "n labels"] | SpectraSource,
        output: Float[ArrayLike, "n output"] | None = None,
        output_ivar: Float[ArrayLike, "n output"] | None = None,
        regularization: float = 0.0,
        *,
        regularization_type: str = "l2",
        censoring_mask: Bool[Array, "output features"] | None = None,
        fit_scatter: bool = True,
        max_iter: int = 8,
        tol: float = 1e-4,
        memory_budget: int | str | None = None,
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

        Given a `SpectraSource` (an on-disk store, or `ArraySource`) in place of
        the arrays, the fit reads it a chunk of stars at a time: the same rounds,
        with every pass over the data summed chunk by chunk, so memory is bounded
        by ``memory_budget`` and not by the number of stars; the result equals the
        in-memory fit on the same data up to round-off.

        Args:
            labels: training labels in physical units, ``(n_stars, label_size)``;
                or a `SpectraSource` holding labels, flux and ivar (then
                ``output`` and ``output_ivar`` stay None).
            output: training outputs (flux), ``(n_stars, output_size)``; NaN
                entries are ignored when their inverse variance is 0 (or any NaN
                entry is treated as missing).
            output_ivar: inverse variances of ``output`` (0 or NaN masks an
                entry; ``+inf`` at a finite flux, a noise-free measurement, is
                refused); None
                means unknown noise, in which case ``scatter`` is the full
                residual scatter.
            regularization: penalty strength λ on all non-bias coefficients:
                ``λ Σ θ²`` (``"l2"``) or ``λ Σ |θ|`` (``"l1"``), added to χ².
            regularization_type: ``"l2"`` (closed form) or ``"l1"`` (proximal).
            censoring_mask: optional boolean ``(output_size, n_features)``; True
                forbids that feature at that pixel (its coefficient is fixed to 0).
            fit_scatter: fit the intrinsic scatter (otherwise ``s = 0``).
            max_iter: maximum number of coefficient/scatter alternations.
            tol: relative tolerance on `s² + σ²` between alternations.
            memory_budget: with a source only: the bytes the fit's data may take
                (an int, or a string such as ``"2GiB"`` or ``"500MB"``; default
                2 GiB), which sets the stars per chunk. It bounds the chunks and
                the per-pixel state, not the interpreter and JAX themselves.

        Returns:
            A new fitted `Cannon`; its `usable` marks the outputs the data
            constrained.

        Raises:
            ShapeError: for arrays of the wrong shape.
            ConfigError: for a source given with ``output``/``output_ivar``, a
                ``memory_budget`` with arrays or too small for one star, or a
                negative or non-finite ``regularization``.
            ValueDomainError: for non-numeric (e.g. text) labels or outputs,
                non-finite labels, negative, ``+inf`` or all-zero inverse
                variances, no usable pixel, or non-finite fitted coefficients.

        Warns:
            UserWarning: counting the pixels marked unusable, and pixels whose
                scatter did not converge.
        """
        if isinstance(labels, SpectraSource):
            if output is not None or output_ivar is not None:
                raise ConfigError(
                    "output, output_ivar: a SpectraSource already holds the flux and ivar; "
                    "give Cannon.fit(source, ...) without them, or arrays throughout"
                )
            trained = _stream.fit_source(
                self,
                labels,
                regularization,
                regularization_type,
                censoring_mask,
                fit_scatter,
                max_iter,
                tol,
                memory_budget,
            )
            what = "source"
        else:
            if memory_budget is not None:
                raise ConfigError(
                    "memory_budget: applies to a fit from a SpectraSource; arrays are "
                    "fitted in memory (wrap them in orrery.lux.survey.ArraySource to stream)"
                )
            if output is None:
                raise ShapeError("output: required with array labels (the training flux)")
            trained = self._fit_arrays(
                labels,
                output,
                output_ivar,
                regularization,
                regularization_type,
                censoring_mask,
                fit_scatter,
                max_iter,
                tol,
            )
            what = "output_ivar"
        return self._fitted(trained, what, regularization, regularization_type, censoring_mask)

    def _fitted(self, trained, what, regularization, regularization_type, censoring_mask):
        """The fitted `Cannon` from the training's arrays, after checking them (``what``:
        the argument an error names); warns about unusable and unconverged pixels."""
        coeffs, s2, usable, scatter_ok, offset, scale, allowed = trained
        dtype = jnp.result_type(float)
        usable_np = np.asarray(usable)
        # on the host, as below: each small device program would be compiled on a first fit
        s2_np = np.asarray(s2)
        finite = np.all(np.isfinite(np.asarray(coeffs)), axis=1) & np.isfinite(s2_np)
        n_unusable = int(np.sum(~usable_np))
        if not np.any(usable_np):
            raise ValueDomainError(
                f"{what}: every inverse variance is zero (or NaN), or no pixel is seen "
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
                stacklevel=5,
            )
        n_slow = int(np.sum(~np.asarray(scatter_ok) & usable_np))
        if n_slow:
            warnings.warn(
                f"Cannon.fit: the intrinsic scatter of {n_slow} pixel(s) did not converge",
                UserWarning,
                stacklevel=5,
            )

        raw = _basis.raw_from_scaled(
            coeffs, offset, scale, self.poly_degree, self.include_bias, "coeffs"
        )
        return Cannon(
            self.label_size,
            self.output_size,
            self.poly_degree,
            self.include_bias,
            coeffs=jax.device_put(np.asarray(raw, dtype)),
            scaled_coeffs=coeffs,
            scatter=jax.device_put(np.sqrt(s2_np)),
            label_offset=jax.device_put(np.asarray(offset, dtype)),
            label_scale=jax.device_put(np.asarray(scale, dtype)),
            censoring_mask=None if censoring_mask is None else jax.device_put(~allowed),
            regularization=float(regularization),
            regularization_type=regularization_type,
            usable=usable,
        )

    def _fit_arrays(
        self,
        labels,
        output,
        output_ivar,
        regularization,
        regularization_type,
        censoring_mask,
        fit_scatter,
        max_iter,
        tol,
    ):
        """The in-memory fit: ``(θ, s², usable, scatter converged, offset, scale, allowed)``."""
        labels, flux, ivar, offset, scale, allowed = _validate.fit_inputs(
            self,
            labels,
            output,
            output_ivar,
            regularization,
            regularization_type,
            censoring_mask,
            max_iter,
        )
        dtype = jnp.result_type(float)
        # the features and the small arrays are formed on the host, in the device's
        # dtype: on the device each would be a program of its own to compile, and the
        # first fit would pay for compiling them (a few tenths of a second)
        scaled = (np.asarray(labels, dtype) - np.asarray(offset, dtype)) / np.asarray(scale, dtype)
        feats = poly_features_host(scaled, self.poly_degree, self.include_bias)
        penalty = np.full(self.n_features, float(regularization))
        if self.include_bias:
            penalty[0] = 0.0

        flux_j, ivar_j = _validate.training_data(flux, ivar)
        allowed_np = np.asarray(allowed)
        padded = flux_j.shape[1] != self.output_size  # masked outputs appended (training_data)
        if padded:  # censored as well as masked: unusable, cut from the results in the program
            pad = flux_j.shape[1] - self.output_size
            allowed_np = np.concatenate([allowed_np, np.zeros((pad, allowed_np.shape[1]), bool)])
        train = partial(
            _train.fit_all,
            feats,
            penalty=np.asarray(penalty, dtype),
            allowed=allowed_np,
            tol=np.asarray(tol, dtype),
            reg_type=regularization_type,
            known_noise=ivar is not None,
            fit_scatter_=bool(fit_scatter),
            max_iter=int(max_iter),
            exponents=feature_exponents(self.label_size, self.poly_degree, self.include_bias),
            n_outputs=self.output_size if padded else None,
        )
        coeffs, s2, usable, scatter_ok, negative, dirty = train(flux_j, ivar_j)
        # a negative ivar in a pixel that also holds a non-finite entry is not flagged
        # by the device scan: look on the host before cleaning (rare data only)
        if bool(negative) or (bool(dirty) and ivar is not None and np.any(ivar < 0)):
            raise ValueDomainError("output_ivar: expected non-negative inverse variances")
        if bool(dirty) and ivar is not None:
            _validate.refuse_infinite_ivar(flux, ivar)
        if bool(dirty):  # only then a cleaned copy; clean data are used as given
            coeffs, s2, usable, scatter_ok, _, _ = train(*_fit.clean_inputs(flux_j, ivar_j))
        return coeffs, s2, usable, scatter_ok, offset, scale, allowed

    # ------------------------------------------------------------------ test step
    @overload
    def infer_labels(
        self,
        output: SpectraSource,
        output_ivar: None = None,
        *,
        n_starts: int = ...,
        initial_labels: None = None,
        max_iter: int = ...,
        xtol: float = ...,
        ftol: float = ...,
        seed: int = ...,
        executor: Executor | None = None,
        catalogue: str | os.PathLike[str] | None = None,
        chunk_stars: int | None = None,
        retries: int = ...,
        progress: bool = ...,
    ) -> LabelStore: ...

    @overload
    def infer_labels(
        self,
        output: Float[ArrayLike, "n output"],
        output_ivar: Float[ArrayLike, "n output"] | None = None,
        *,
        n_starts: int = ...,
        initial_labels: Float[ArrayLike, "n labels"] | None = None,
        max_iter: int = ...,
        xtol: float = ...,
        ftol: float = ...,
        seed: int = ...,
    ) -> LabelInference: ...

    def infer_labels(
        self,
        output: Float[ArrayLike, "n output"] | SpectraSource,
        output_ivar: Float[ArrayLike, "n output"] | None = None,
        *,
        n_starts: int = 4,
        initial_labels: Float[ArrayLike, "n labels"] | None = None,
        max_iter: int = 100,
        xtol: float = 1e-6,
        ftol: float = 1e-7,
        seed: int = 0,
        executor: Executor | None = None,
        catalogue: str | os.PathLike[str] | None = None,
        chunk_stars: int | None = None,
        retries: int = 1,
        progress: bool = True,
    ) -> LabelInference | LabelStore:
        """Infer labels for many spectra at once (the test step), or for a whole survey.

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
            executor, catalogue, chunk_stars, retries, progress: for a survey,
                ``output`` a `SpectraSource` (a `orrery.lux.survey.SpectraStore`, an
                ``ArraySource``) and ``output_ivar`` None: the stars are labelled
                ``chunk_stars`` at a time (default: the store's chunks, else 1024)
                on ``executor`` (any ``concurrent.futures.Executor``, a Dask
                client's ``get_executor()``; default: in this process) and written
                into the label catalogue at ``catalogue`` (a new path, or the one
                an interrupted call with the same arguments left: only its missing
                chunks run, bit-identical to an uninterrupted run). A chunk whose
                worker fails is run again up to ``retries`` times, then the call
                raises naming it (a rerun resumes). ``progress`` shows stars/s.

        Returns:
            `LabelInference` with physical-unit labels and covariances. A
            spectrum without enough usable pixels comes back with
            ``converged`` False and infinite uncertainties (NaN labels and χ²
            when no pixel is usable). For a survey: the finished
            `orrery.lux.survey.LabelStore` (the same columns, plus ``usable``,
            ``n_pixels_used`` and the source's ``ids``).

        Raises:
            NotFittedError: (a ``RuntimeError``) before ``fit``.
            ShapeError: for arrays of the wrong shape.
            ValueDomainError: for negative or ``+inf`` inverse variances or text input.
            ConfigError: for ``n_starts`` or ``max_iter`` below 1, or a negative
                or non-finite ``xtol`` / ``ftol``.
        """
        self._check_fitted("infer_labels")
        check_positive_int(n_starts, "n_starts")
        check_positive_int(max_iter, "max_iter")
        check_nonnegative_float(xtol, "xtol")
        check_nonnegative_float(ftol, "ftol")
        settings = {"n_starts": int(n_starts), "max_iter": int(max_iter), "xtol": float(xtol)}
        settings.update(ftol=float(ftol), seed=int(seed))
        if isinstance(output, SpectraSource):
            from ._survey import label as _survey_label

            return _survey_label.label_survey(
                self,
                output,
                output_ivar,
                initial_labels,
                settings,
                executor=executor,
                catalogue=catalogue,
                chunk_stars=chunk_stars,
                retries=retries,
                progress=progress,
            )
        if catalogue is not None or executor is not None or chunk_stars is not None:
            raise ConfigError(
                "executor, catalogue, chunk_stars: only for a survey (output a SpectraSource)"
            )
        out_arr = check_ndim(output, (1, 2), "output")
        single = out_arr.ndim == 1
        if single:
            out_arr = np.asarray(out_arr)[None, :]
            if output_ivar is not None:
                output_ivar = np.asarray(output_ivar)[None, :]
        dtype = jnp.result_type(float)
        flux, ivar = _validate.checked_output(out_arr, output_ivar, self.output_size)
        n = flux.shape[0]
        first = None
        if initial_labels is not None:
            init = check_ndim(initial_labels, 2, "initial_labels")
            if init.shape != (n, self.label_size):
                raise ShapeError(
                    f"initial_labels: expected shape ({n}, {self.label_size}), got {init.shape}"
                )
            first = self.scale_labels(jnp.asarray(init, dtype))
        rows = _label.label_rows(self._model_arrays(), flux, ivar, first, **settings)
        res = LabelInference(rows.labels, rows.covariance, rows.chi2, rows.converged)
        if single:
            res = LabelInference(res.labels[0], res.covariance[0], res.chi2[0], res.converged[0])
        return res

    def _model_arrays(self) -> _label.ModelArrays:
        """The fitted arrays the test step needs (scaled basis)."""
        dtype = jnp.result_type(float)
        offset, scale = self._offset_scale()
        s2 = jnp.zeros(self.output_size, dtype) if self.scatter is None else self.scatter**2
        usable = jnp.ones(self.output_size, bool) if self.usable is None else self.usable
        return _label.ModelArrays(
            self._model_coeffs(),
            s2,
            usable,
            offset,
            scale,
            self.label_size,
            self.poly_degree,
            self.include_bias,
        )

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

    def get_coeffs_as_transform_pars(self) -> dict[str, Any]:
        """Coefficients as ``to_transform_sequence`` parameters: ``{"data": [{}, {"A": A}]}``.

        ``A`` is ``coeffs`` (the label scaling folded in; shape ``(output_size,
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
        """
        self._check_fitted("get_coeffs_as_transform_pars")
        return {"data": [{}, {"A": jnp.asarray(self.coeffs)}]}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], metadata: dict | None = None):
        """Save to an ``orrery.interface`` artifact directory (no pickle).

        Arrays keep their dtype (a Cannon fitted under ``jax_enable_x64`` is saved
        in float64).
        """
        return _io.save_cannon(self, path, metadata)

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
        return _io.load_cannon(cls, path)
