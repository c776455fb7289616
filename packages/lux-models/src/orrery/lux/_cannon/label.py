"""The test step on arrays of a fitted model: what `Cannon.infer_labels` and a survey worker run.

Both call `label_rows` with the model's arrays, so a survey labelled chunk by chunk on
an executor gives what the in-memory call gives for the same spectra (the starts do
not depend on the batch: the linear-algebra guess, the median and the same
pseudo-random points for every spectrum).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from orrery.interface import ValueDomainError

from . import infer as _infer
from . import validate as _validate


class ModelArrays(NamedTuple):
    """What the test step needs of a fitted Cannon (scaled basis)."""

    coeffs: object
    s2: object
    usable: object
    offset: object
    scale: object
    label_size: int
    poly_degree: int
    include_bias: bool


class Rows(NamedTuple):
    labels: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    converged: np.ndarray
    n_used: np.ndarray


def label_rows(
    model: ModelArrays,
    flux,
    ivar,
    first,
    *,
    seed: int,
    n_starts: int,
    max_iter: int,
    xtol: float,
    ftol: float,
) -> Rows:
    """Labels of checked ``flux``/``ivar`` rows; see `Cannon.infer_labels` for the flags."""
    dtype = jnp.result_type(float)
    labels, cov, chi2, done, n_used, singular, negative = _infer.infer_all(
        jnp.asarray(model.coeffs, dtype),
        jnp.asarray(model.s2, dtype),
        jnp.asarray(model.usable),
        jnp.asarray(model.offset, dtype),
        jnp.asarray(model.scale, dtype),
        flux,
        ivar,
        first,
        int(seed),
        model.poly_degree,
        model.include_bias,
        int(n_starts),
        int(max_iter),
        float(xtol),
        float(ftol),
    )
    if bool(negative):
        _validate.refuse_infinite_ivar(np.asarray(flux), np.asarray(ivar))
        raise ValueDomainError("output_ivar: expected non-negative inverse variances")
    labels, cov, chi2 = np.array(labels), np.array(cov), np.array(chi2)
    n_used = np.asarray(n_used)
    # a spectrum that cannot pin its labels is flagged, never answered with certainty
    no_data = n_used == 0
    weak = (n_used < model.label_size) | np.asarray(singular)
    labels[no_data] = np.nan
    chi2[no_data] = np.nan
    cov[weak] = np.where(np.eye(model.label_size, dtype=bool), np.inf, np.nan)
    return Rows(labels, cov, chi2, np.asarray(done) & ~weak, n_used)
