"""Host-side input checks of The Cannon, and the one device scan of its training data.

Shapes, dtypes and argument values are checked on the host, where they cost
nothing; the data themselves (finite flux and ivar, no negative ivar) are
checked once, on the device, by the scan the training loop needs anyway.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import (
    ShapeError,
    ValueDomainError,
    check_choice,
    check_finite,
    check_ndim,
    check_nonnegative_float,
    check_positive_int,
)

from . import fit as _fit

_ALIGN = 64  # bytes; XLA's CPU client shares (does not copy) host buffers aligned to this
#: the training data's outputs are padded to a multiple of this when they are copied anyway:
#: XLA's CPU kernels over a vector-width multiple of outputs need no remainder loops, and the
#: training program compiles faster (2,000 x 8,575 -> 8,576: about 3.6 -> 2.7-3.1 CPU s)
PAD_OUTPUTS = 8


def _copied(arr: np.ndarray) -> bool:
    """Whether `_to_device` copies ``arr`` (a NumPy array not shared as it is)."""
    return jax.default_backend() == "cpu" and arr.size > 0 and not _aligned(arr)


def _to_device(arr: np.ndarray, width: int | None = None) -> jax.Array:
    """A NumPy array on the default device, shared rather than copied where JAX can.

    On the CPU an ``_ALIGN``-byte-aligned C-contiguous array is shared, not
    copied. A large NumPy array is usually not aligned so (its data sit 16
    bytes into an ``mmap``), and ``jax.device_put`` then copies it into memory
    faulted in page by page, about three times slower than a NumPy copy, which
    gets huge pages. So an unaligned array is first copied by NumPy into an
    aligned buffer that JAX then shares. Nothing here writes to the result, so
    sharing memory is safe; the copy belongs to this call alone.

    ``width``: with a copy, the 2-d result's columns (at least ``arr``'s), the
    extra ones zero; only for an array `_copied` copies.
    """
    if _copied(arr):
        shape = arr.shape if width is None else (arr.shape[0], width)
        nbytes = int(np.prod(shape)) * arr.itemsize
        buf = np.empty(nbytes + _ALIGN, np.uint8)
        start = (-buf.ctypes.data) % _ALIGN
        out = buf[start : start + nbytes].view(arr.dtype).reshape(shape)
        if shape == arr.shape:
            np.copyto(out, arr)
        else:
            np.copyto(out[:, : arr.shape[1]], arr)
            out[:, arr.shape[1] :] = 0
        arr = out
    return jax.device_put(arr)


def _aligned(arr: np.ndarray) -> bool:
    return arr.flags.c_contiguous and arr.ctypes.data % _ALIGN == 0


def numeric(x, name):
    """``x`` as a NumPy array of a numeric dtype, or a clear error (no silent string parsing)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueDomainError(
            f"{name}: expected a numeric array (float), got dtype {arr.dtype}; "
            "convert text columns to numbers (and decide what their missing values mean) first"
        )
    return arr


def checked_output(output, ivar, n_out, name="output"):
    """Spectra (and ivar) as device arrays of the default float dtype, shapes checked.

    Bad entries are masked on the device, in the test-step program itself.
    """
    dtype = np.dtype(jnp.result_type(float))
    flux = numeric(output, name).astype(dtype, copy=False)
    if flux.shape[-1] != n_out:
        raise ShapeError(f"{name}: expected {n_out} columns (output_size), got {flux.shape[-1]}")
    if ivar is None:
        return _to_device(flux), None
    ivar_arr = numeric(ivar, "output_ivar").astype(dtype, copy=False)
    if ivar_arr.shape != flux.shape:
        raise ShapeError(
            f"output_ivar: expected the shape of {name} {flux.shape}, got {ivar_arr.shape}"
        )
    return _to_device(flux), _to_device(ivar_arr)


def refuse_infinite_ivar(flux: np.ndarray, ivar: np.ndarray) -> None:
    """Raise when a measured (finite) flux has inverse variance ``+inf`` (zero noise).

    Such an entry cannot be weighted (the model would have to pass through it
    exactly) and must not silently drop out as masked; 0 (or NaN) is how an
    entry is masked. Where the flux itself is missing (not finite) the entry is
    masked whatever its ivar.
    """
    n_inf = int(np.count_nonzero(np.isposinf(ivar) & np.isfinite(flux)))
    if n_inf:
        raise ValueDomainError(
            f"output_ivar: {n_inf} entries with a finite flux are +inf (zero noise), which "
            "cannot be weighted; give finite inverse variances (0 masks an entry)"
        )


def fit_inputs(
    model,
    labels,
    output,
    output_ivar,
    regularization,
    regularization_type,
    censoring_mask,
    max_iter,
):
    """Check the arguments of `Cannon.fit` and derive the label scaling.

    Returns:
        labels (float64), flux and ivar (NumPy, the default float dtype; ivar
        may be None), the label offset and scale, and the allowed-term mask
        ``(output_size, n_features)``.

    Raises:
        ShapeError: for arrays of the wrong shape.
        ConfigError: for a negative or non-finite regularization.
        ValueDomainError: for non-numeric or non-finite labels, a label without
            spread, text outputs, or too few stars.
    """
    check_choice(regularization_type, ("l2", "l1"), "regularization_type")
    labels = np.asarray(numeric(labels, "labels"), dtype=float)
    labels = check_finite(check_ndim(labels, 2, "labels"), "labels")
    if labels.shape[1] != model.label_size:
        raise ShapeError(
            f"labels: expected {model.label_size} columns (label_size), got {labels.shape[1]}"
        )
    output = check_ndim(numeric(output, "output"), 2, "output")
    if output.shape[0] != labels.shape[0]:
        raise ShapeError(
            f"output: expected {labels.shape[0]} rows (one per labelled star), "
            f"got {output.shape[0]}"
        )
    dtype = jnp.result_type(float)
    np_dtype = np.dtype(dtype)
    if output.shape[1] != model.output_size:
        raise ShapeError(
            f"output: expected {model.output_size} columns (output_size), got {output.shape[1]}"
        )
    flux = output.astype(np_dtype, copy=False)
    ivar = None
    if output_ivar is not None:
        ivar = numeric(output_ivar, "output_ivar").astype(np_dtype, copy=False)
        if ivar.shape != flux.shape:
            raise ShapeError(
                f"output_ivar: expected the shape of output {flux.shape}, got {ivar.shape}"
            )
    regularization = check_nonnegative_float(regularization, "regularization")
    n_stars = labels.shape[0]
    if n_stars < model.n_features and regularization == 0:
        raise ValueDomainError(
            f"labels: {n_stars} stars cannot constrain {model.n_features} coefficients "
            "per pixel without regularization"
        )
    check_positive_int(max_iter, "max_iter")

    # without a bias term the labels are only scaled: a polynomial without a
    # constant in centred labels is another model than one in the labels as given
    offset = np.median(labels, axis=0) if model.include_bias else np.zeros(labels.shape[1])
    lo, hi = np.percentile(labels, [2.5, 97.5], axis=0)
    scale = 0.5 * (hi - lo)
    if np.any(scale <= 0):
        bad = int(np.argmax(scale <= 0))
        raise ValueDomainError(
            f"labels: column {bad} has zero spread; it cannot be used as a label"
        )
    if censoring_mask is None:
        allowed = np.ones((model.output_size, model.n_features), bool)
    else:
        cm = np.asarray(censoring_mask, dtype=bool)
        if cm.shape != (model.output_size, model.n_features):
            raise ShapeError(
                f"censoring_mask: expected shape ({model.output_size}, {model.n_features}), "
                f"got {cm.shape}"
            )
        allowed = ~cm

    return labels, flux, ivar, offset, scale, allowed


def training_data(flux, ivar):
    """The training data on the device; without ivar, unit weights where the flux is finite.

    With ivar the arrays are used as given: the first pass of the training
    program scans them (`orrery.lux._cannon.train.fit_all`), and only data
    found not finite there are cleaned (`clean_inputs`). When both are copied
    anyway (`_to_device`), their outputs are padded to a multiple of
    `PAD_OUTPUTS` with masked entries (flux and ivar 0), which costs nothing
    more; the caller cuts the results back (``fit_all``'s ``n_outputs``).
    """
    if ivar is None:
        return _fit.clean_inputs(_to_device(flux), None)
    p = flux.shape[1]
    width = None
    if p % PAD_OUTPUTS and _copied(flux) and _copied(ivar):
        width = -(-p // PAD_OUTPUTS) * PAD_OUTPUTS
    return _to_device(flux, width), _to_device(ivar, width)
