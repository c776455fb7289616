"""Saving and loading The Cannon as an ``orrery.interface`` artifact (no pickle).

The array ``coeffs`` of an artifact holds the coefficients in the scaled-label
basis (`Cannon.scaled_coeffs`), as every artifact has since 0.1; the raw-label
`Cannon.coeffs` are derived from them on loading, so older artifacts load
unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from orrery.interface import ArtifactError, ConfigError, load_artifact, save_artifact

from .._poly import n_poly_features
from .._precision import warn_if_narrowed
from .._version import __version__
from .basis import raw_from_scaled

_KIND = "orrery.lux.Cannon"


def save_cannon(model, path: str | os.PathLike[str], metadata: dict | None = None):
    """Write ``model`` (a `Cannon`) to the artifact directory ``path``; see `Cannon.save`."""
    arrays = {}
    names = ("scatter", "label_offset", "label_scale", "censoring_mask", "usable")
    for name in names:
        val = getattr(model, name)
        if val is not None:
            arrays[name] = np.asarray(val)
    if model.is_fitted:
        arrays["coeffs"] = np.asarray(model._model_coeffs())  # the scaled basis, as ever
    if model.is_fitted and model.usable is None:
        arrays["usable"] = np.ones(model.output_size, bool)
    config = {
        "label_size": model.label_size,
        "output_size": model.output_size,
        "poly_degree": model.poly_degree,
        "include_bias": model.include_bias,
        "regularization": model.regularization,
        "regularization_type": model.regularization_type,
        "fitted": model.is_fitted,
        "censored": model.censoring_mask is not None,
    }
    return save_artifact(
        path,
        kind=_KIND,
        config=config,
        arrays=arrays,
        metadata=metadata,
        producer={"distribution": "lux-models", "version": __version__},
    )


def load_cannon(cls, path: str | os.PathLike[str]):
    """Read a Cannon of class ``cls`` from ``path``; see `Cannon.load`."""
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
            raise ArtifactError(f"{art.path}/arrays.npz: label_scale must be > 0 and scatter >= 0")
        warn_if_narrowed(
            [n for n, a in floats.items() if a.dtype.itemsize > 4],
            f"Cannon.load: {art.path}",
            stacklevel=3,
        )
        kwargs = {name: jnp.asarray(arr) for name, arr in floats.items()}
        kwargs["usable"] = jnp.asarray(usable)
        scaled = kwargs.pop("coeffs")
        try:
            raw = raw_from_scaled(
                floats["coeffs"],
                floats["label_offset"],
                floats["label_scale"],
                poly_degree,
                include_bias,
                f"Cannon.load: {art.path}",
            )
        except ConfigError as err:  # a Cannon without bias but centred labels (before 0.2)
            raise ArtifactError(f"{err}; this artifact cannot be loaded, refit it") from None
        kwargs["scaled_coeffs"] = scaled
        kwargs["coeffs"] = jnp.asarray(raw, scaled.dtype)
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
