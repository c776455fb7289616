"""The data layer: observed outputs with errors, preprocessing, and named collections."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from orrery.interface import ConfigError, ShapeError, ValueDomainError

__all__ = ["LuxData", "OutputData", "ShiftScalePreprocessor"]


class ShiftScalePreprocessor(eqx.Module):
    """``x -> (x - shift) / scale`` per feature; errors are divided by ``scale``."""

    shift: Float[Array, " features"]
    scale: Float[Array, " features"]

    def __init__(self, shift, scale):
        shift = jnp.atleast_1d(jnp.asarray(shift, dtype=float))
        scale = jnp.atleast_1d(jnp.asarray(scale, dtype=float))
        bad = ~np.isfinite(np.asarray(scale)) | (np.asarray(scale) <= 0)
        if bad.any():
            idx = int(np.argmax(bad))
            raise ValueDomainError(
                f"scale: feature {idx} has scale {float(np.asarray(scale)[idx])}; a feature "
                "with zero (or undefined) spread cannot be standardised"
            )
        self.shift = shift
        self.scale = scale

    @classmethod
    def from_data(cls, data) -> ShiftScalePreprocessor:
        """Shift by the NaN-ignoring mean, scale by the standard deviation."""
        arr = _as_2d(data, "data")
        return cls(np.nanmean(arr, axis=0), np.nanstd(arr, axis=0))

    @classmethod
    def from_data_percentiles(cls, data, low: float = 16.0, high: float = 84.0):
        """Shift by the NaN-median, scale by half the ``low``–``high`` percentile span."""
        arr = _as_2d(data, "data")
        lo, hi = np.nanpercentile(arr, [low, high], axis=0)
        return cls(np.nanmedian(arr, axis=0), 0.5 * (hi - lo))

    def transform(self, data):
        return (jnp.asarray(data) - self.shift) / self.scale

    def inverse_transform(self, data):
        return jnp.asarray(data) * self.scale + self.shift

    def transform_err(self, err):
        return jnp.asarray(err) / self.scale

    def inverse_transform_err(self, err):
        return jnp.asarray(err) * self.scale


def _as_2d(data, name) -> np.ndarray:
    arr = np.asarray(data, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected 1 or 2 dimensions, got shape {arr.shape}")
    return arr


class OutputData(eqx.Module):
    """Observed values of one output, ``(n_objects, output_size)``, with errors.

    Args:
        data: values; a 1-D array becomes one column. NaN marks a missing value.
        err: standard deviations broadcast to ``data``'s shape (None: no errors,
            unit weights). ``inf`` (zero weight) marks a value fits must ignore.
        preprocessor: optional :class:`ShiftScalePreprocessor`.
    """

    data: Float[Array, "n out"]
    err: Float[Array, "n out"] | None
    preprocessor: ShiftScalePreprocessor | None

    def __init__(self, data, err=None, preprocessor=None):
        arr = jnp.asarray(_as_2d(data, "data"))
        self.data = arr
        if err is None:
            self.err = None
        else:
            e = jnp.asarray(err, dtype=float)
            if e.ndim == 1 and arr.shape[1] == 1 and e.shape[0] == arr.shape[0]:
                e = e[:, None]
            try:
                e = jnp.broadcast_to(e, arr.shape)
            except ValueError as exc:
                raise ShapeError(
                    f"err: shape {tuple(e.shape)} does not broadcast to data {tuple(arr.shape)}"
                ) from exc
            if np.any(np.asarray(e) < 0):
                raise ValueDomainError("err: expected non-negative standard deviations")
            self.err = e
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def size(self) -> int:
        """``output_size``: number of columns."""
        return int(self.data.shape[1])

    @property
    def mask(self):
        """True where a value takes part in fits (finite data and finite error)."""
        good = jnp.isfinite(self.data)
        if self.err is not None:
            good = good & jnp.isfinite(self.err)
        return good

    def __getitem__(self, idx) -> OutputData:
        return OutputData(
            self.data[idx], None if self.err is None else self.err[idx], self.preprocessor
        )

    def preprocess(self) -> OutputData:
        """A new OutputData in the preprocessed space (a copy without a preprocessor)."""
        if self.preprocessor is None:
            return OutputData(self.data, self.err)
        p = self.preprocessor
        err = None if self.err is None else p.transform_err(self.err)
        return OutputData(p.transform(self.data), err, p)

    def unprocess(self) -> OutputData:
        """Inverse of :meth:`preprocess` (a copy without a preprocessor)."""
        if self.preprocessor is None:
            return OutputData(self.data, self.err)
        p = self.preprocessor
        err = None if self.err is None else p.inverse_transform_err(self.err)
        return OutputData(p.inverse_transform(self.data), err, p)


class LuxData(Mapping):
    """Named outputs of the same objects, e.g. ``LuxData(flux=..., label=...)``.

    Values may be :class:`OutputData` or arrays. Supports ``data["flux"]``,
    slicing over objects (``data[:100]``), ``len``, ``preprocess`` and
    ``unprocess``.
    """

    def __init__(self, **outputs: OutputData | Any):
        if not outputs:
            raise ConfigError("LuxData: expected at least one output")
        self._outputs: dict[str, OutputData] = {}
        n = None
        for name, val in outputs.items():
            if ":" in name:
                raise ValueError(f"output name {name!r}: ':' is reserved")
            od = val if isinstance(val, OutputData) else OutputData(val)
            if n is None:
                n = len(od)
            elif len(od) != n:
                raise ShapeError(
                    f"LuxData: output {name!r} has {len(od)} objects, the others have {n}"
                )
            self._outputs[name] = od

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return self._outputs[key]
            except KeyError:
                raise KeyError(f"no output named {key!r}; outputs: {list(self._outputs)}") from None
        return LuxData(**{k: v[key] for k, v in self._outputs.items()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    @property
    def data_size(self) -> int:
        """Number of objects."""
        return len(next(iter(self._outputs.values())))

    def preprocess(self) -> LuxData:
        return LuxData(**{k: v.preprocess() for k, v in self._outputs.items()})

    def unprocess(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Map preprocessed arrays ``{name: array}`` back to the original units."""
        out = {}
        for k, v in values.items():
            p = self._outputs[k].preprocessor if k in self._outputs else None
            out[k] = v if p is None else p.inverse_transform(v)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.data.shape)}" for k, v in self._outputs.items())
        return f"LuxData({inner})"
