"""The data layer: observed outputs with errors, preprocessing, and named collections."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, overload

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from orrery.interface import ConfigError, ConfigTypeError, ShapeError, ValueDomainError

__all__ = [
    "AbstractPreprocessor",
    "LuxData",
    "NullPreprocessor",
    "OutputData",
    "PolluxData",
    "ShiftScalePreprocessor",
]


class AbstractPreprocessor(eqx.Module):
    """Interface of a preprocessor: a map to a working space and back, for values and errors."""

    def transform(self, data):
        """Map values to the preprocessed space."""
        raise NotImplementedError

    def inverse_transform(self, data):
        """Map preprocessed values back to the original units."""
        raise NotImplementedError

    def transform_err(self, err):
        """Map standard deviations to the preprocessed space."""
        raise NotImplementedError

    def inverse_transform_err(self, err):
        """Map preprocessed standard deviations back to the original units."""
        raise NotImplementedError


class NullPreprocessor(AbstractPreprocessor):
    """The identity preprocessor (the default of `OutputData`).

    Example:
        >>> NullPreprocessor().transform(3.0)
        3.0
    """

    def transform(self, data):
        return data

    def inverse_transform(self, data):
        return data

    def transform_err(self, err):
        return err

    def inverse_transform_err(self, err):
        return err


class ShiftScalePreprocessor(AbstractPreprocessor):
    """Standardise: `x -> (x - loc) / scale`; errors are divided by `scale`.

    Args:
        loc: the shift, a scalar or one value per feature.
        scale: the scale, positive and finite, same shape rules as `loc`.

    Raises:
        ValueDomainError: when a `scale` is zero, negative or not finite.

    Example:
        >>> import numpy as np
        >>> p = ShiftScalePreprocessor(loc=10.0, scale=2.0)
        >>> float(p.transform(np.array(14.0)))
        2.0
        >>> float(p.inverse_transform_err(np.array(0.5)))
        1.0
    """

    loc: Float[Array, "..."]
    scale: Float[Array, "..."]

    def __init__(self, loc, scale):
        loc = jnp.asarray(loc, dtype=float)
        scale_np = np.asarray(scale, dtype=float)
        bad = ~np.isfinite(scale_np) | (scale_np <= 0)
        if bad.any():
            idx = int(np.argmax(bad.ravel()))
            raise ValueDomainError(
                f"scale: feature {idx} has scale {float(scale_np.ravel()[idx])}; a feature "
                "with zero (or undefined) spread cannot be standardised"
            )
        self.loc = loc
        self.scale = jnp.asarray(scale_np, dtype=float)

    @property
    def shift(self):
        """The same as `loc` (the name this package used before 0.2)."""
        return self.loc

    @classmethod
    def from_data(cls, data, axis: int = 0) -> ShiftScalePreprocessor:
        """Shift by the mean and scale by the standard deviation along `axis` (NaN ignored).

        Args:
            data: the values, e.g. `(n_objects, n_features)`.
            axis: the axis to reduce (the objects).

        Returns:
            The preprocessor.
        """
        arr = _as_float(data, "data")
        return cls(loc=np.nanmean(arr, axis=axis), scale=np.nanstd(arr, axis=axis))

    @classmethod
    def from_data_percentiles(
        cls,
        data,
        loc_percentile: float = 50.0,
        scale_percentiles: tuple[float, float] = (16.0, 84.0),
        axis: int = 0,
    ) -> ShiftScalePreprocessor:
        """Shift by a percentile and scale by half the span of two percentiles (NaN ignored).

        Args:
            data: the values, e.g. `(n_objects, n_features)`.
            loc_percentile: the percentile used as `loc` (50: the median).
            scale_percentiles: `(low, high)`; `scale` is half the `low`..`high` span.
            axis: the axis to reduce (the objects).

        Returns:
            The preprocessor.
        """
        arr = _as_float(data, "data")
        if len(tuple(scale_percentiles)) != 2:
            raise ConfigError(f"scale_percentiles: expected (low, high), got {scale_percentiles!r}")
        lo, hi = np.nanpercentile(arr, list(scale_percentiles), axis=axis)
        loc = np.nanpercentile(arr, loc_percentile, axis=axis)
        return cls(loc=loc, scale=0.5 * (hi - lo))

    def transform(self, data):
        return (jnp.asarray(data) - self.loc) / self.scale

    def inverse_transform(self, data):
        return jnp.asarray(data) * self.scale + self.loc

    def transform_err(self, err):
        return jnp.asarray(err) / self.scale

    def inverse_transform_err(self, err):
        return jnp.asarray(err) * self.scale


def _as_float(data, name) -> np.ndarray:
    try:
        return np.asarray(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueDomainError(f"{name}: expected numbers, could not convert ({exc})") from exc


def _as_2d(data, name) -> np.ndarray:
    arr = _as_float(data, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected 1 or 2 dimensions, got shape {arr.shape}")
    return arr


class OutputData(eqx.Module):
    """Observed values of one output, `(n_objects, output_size)`, with errors.

    Args:
        data: values; a 1-D array becomes one column. NaN marks a missing value.
        err: standard deviations broadcast to `data`'s shape; default: a
            scalar 0 of shape `()` (no measurement error, as upstream; `has_err`
            is False). `inf` (zero weight) marks a value fits must ignore.
        preprocessor: an `AbstractPreprocessor` (default `NullPreprocessor`).
        processed: whether `data` and `err` are already in the preprocessed space.

    Raises:
        ShapeError: when `err` does not broadcast to `data`.
        ValueDomainError: for negative or NaN errors.

    Example:
        >>> import numpy as np
        >>> od = OutputData(np.array([1.0, 3.0]), preprocessor=ShiftScalePreprocessor(2.0, 1.0))
        >>> pp = od.preprocess()
        >>> pp.processed, pp.data[:, 0].tolist()
        (True, [-1.0, 1.0])
        >>> pp.preprocess() is pp
        True
    """

    data: Float[Array, "n out"]
    err: Float[Array, "n out"]
    preprocessor: AbstractPreprocessor
    processed: bool = eqx.field(static=True)
    has_err: bool = eqx.field(static=True)

    def __init__(self, data, err=None, preprocessor=None, processed: bool = False):
        arr = jnp.asarray(_as_2d(data, "data"))
        self.data = arr
        self.has_err = err is not None
        self._set_preprocessor(preprocessor, processed)
        if err is None:  # as upstream: a scalar zero, no measurement error
            self.err = jnp.zeros((), arr.dtype)
            return
        e = jnp.asarray(_as_float(err, "err"))
        if e.ndim == 1 and arr.shape[1] == 1 and e.shape[0] == arr.shape[0]:
            e = e[:, None]
        try:
            e = jnp.broadcast_to(e, arr.shape)
        except ValueError as exc:
            raise ShapeError(
                f"err: shape {tuple(e.shape)} does not broadcast to data {tuple(arr.shape)}"
            ) from exc
        e_np = np.asarray(e)
        if np.any(np.isnan(e_np)) or np.any(e_np < 0):
            raise ValueDomainError(
                "err: expected non-negative standard deviations (inf marks a value to ignore), "
                "got negative or NaN entries"
            )
        self.err = e

    def _set_preprocessor(self, preprocessor, processed) -> None:
        if preprocessor is None:
            preprocessor = NullPreprocessor()
        if not isinstance(preprocessor, AbstractPreprocessor):
            raise ConfigTypeError(
                f"preprocessor: expected an AbstractPreprocessor, got {type(preprocessor).__name__}"
            )
        self.preprocessor = preprocessor
        self.processed = bool(processed)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def size(self) -> int:
        """The output size: number of columns."""
        return int(self.data.shape[1])

    @property
    def mask(self):
        """True where a value takes part in fits (finite data and finite error)."""
        return jnp.isfinite(self.data) & jnp.isfinite(self.err)

    def _new(self, data, err, processed) -> OutputData:
        # keep "no measurement error given" through copies
        return OutputData(data, err if self.has_err else None, self.preprocessor, processed)

    def __getitem__(self, idx) -> OutputData:
        if isinstance(idx, (int, np.integer)):  # one object stays one row
            n = len(self)
            if not -n <= idx < n:
                raise IndexError(f"idx: object {idx} is out of range for {n} objects")
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return self._new(self.data[idx], self.err[idx] if self.has_err else None, self.processed)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)

    def preprocess(self) -> OutputData:
        """A copy in the preprocessed space; already processed data is returned as is.

        Returns:
            The preprocessed `OutputData` (`processed=True`), or `self` when
            it is already processed.
        """
        if self.processed:
            return self
        p = self.preprocessor
        return self._new(p.transform(self.data), p.transform_err(self.err), True)

    def unprocess(self, data: Any = None) -> OutputData:
        """A copy back in the original units.

        Args:
            data: None (these data), or, as upstream, an array in the processed
                space (e.g. a prediction) or a processed `OutputData`, brought
                back with this output's preprocessor.

        Returns:
            The `OutputData` with `processed=False`.

        Raises:
            ValueDomainError: (a `ValueError`) when the data are not processed.
        """
        if data is not None:
            if isinstance(data, OutputData):
                if not data.processed:
                    raise ValueDomainError(
                        "unprocess: data is not processed; unprocessing raw data would "
                        "inverse-transform it a second time"
                    )
                err = data.err if data.has_err else None
                return OutputData(data.data, err, self.preprocessor, True).unprocess()
            return OutputData(data, None, self.preprocessor, True).unprocess()
        if not self.processed:
            raise ValueDomainError(
                "unprocess: this OutputData is not processed; unprocessing raw data would "
                "inverse-transform it a second time"
            )
        p = self.preprocessor
        return self._new(p.inverse_transform(self.data), p.inverse_transform_err(self.err), False)


class LuxData(Mapping[str, OutputData]):
    """Named outputs of the same objects, e.g. `LuxData(flux=..., label=...)`.

    Values may be `OutputData` or arrays. `len(data)` is the number of
    objects, as upstream; iteration, `keys()`, `items()` and `values()`
    run over the outputs. `data[:100]` slices objects.

    Args:
        **outputs: one `OutputData` (or array) per output name.

    Raises:
        ConfigError: without outputs, or for a name containing `':'`.
        ShapeError: when outputs disagree on the number of objects.

    Example:
        >>> import numpy as np
        >>> d = LuxData(flux=np.ones((5, 3)), label=np.zeros(5))
        >>> len(d), list(d)
        (5, ['flux', 'label'])
        >>> len(d[1:3])
        2
    """

    def __init__(self, **outputs: OutputData | Any):
        if not outputs:
            raise ConfigError("outputs: LuxData expects at least one named output")
        self._outputs: dict[str, OutputData] = {}
        n = None
        for name, val in outputs.items():
            if ":" in name:
                raise ConfigError(f"outputs: name {name!r} contains ':', which is reserved")
            od = val if isinstance(val, OutputData) else OutputData(val)
            if n is None:
                n = len(od)
            elif len(od) != n:
                raise ShapeError(
                    f"outputs: output {name!r} has {len(od)} objects, the others have {n}"
                )
            self._outputs[name] = od

    @overload
    def __getitem__(self, key: str) -> OutputData: ...

    @overload
    def __getitem__(self, key: object) -> LuxData: ...

    def __getitem__(self, key: object) -> OutputData | LuxData:
        if isinstance(key, str):
            try:
                return self._outputs[key]
            except KeyError:
                raise KeyError(f"no output named {key!r}; outputs: {list(self._outputs)}") from None
        return type(self)(**{k: v[key] for k, v in self._outputs.items()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __contains__(self, key) -> bool:
        return key in self._outputs

    def __len__(self) -> int:
        return self.data_size

    def keys(self):
        return self._outputs.keys()

    def items(self):
        return self._outputs.items()

    def values(self):
        return self._outputs.values()

    @property
    def data_size(self) -> int:
        """The number of objects."""
        return len(next(iter(self._outputs.values())))

    def preprocess(self) -> LuxData:
        """Every output in its preprocessed space (processed outputs are kept as they are)."""
        return type(self)(**{k: v.preprocess() for k, v in self._outputs.items()})

    def unprocess(
        self, data: Mapping[str, Any] | None = None, ignore_missing: bool = False
    ) -> LuxData:
        """Back to the original units.

        Args:
            data: None: unprocess these outputs. A mapping `{name: array or
                OutputData}` in the preprocessed space (e.g. predictions):
                unprocess it with these outputs' preprocessors.
            ignore_missing: skip names in `data` that this collection does not
                have, instead of raising.

        Returns:
            A `LuxData` in the original units.

        Raises:
            ConfigError: for a name not in this collection (unless `ignore_missing`).
            ValueDomainError: when unprocessing data that are not processed.
        """
        if data is None:
            return LuxData(**{k: v.unprocess() for k, v in self._outputs.items()})
        out = {}
        for k, v in data.items():
            if k not in self._outputs:
                if ignore_missing:
                    continue
                raise ConfigError(
                    f"data: no output named {k!r} to take a preprocessor from; outputs: "
                    f"{list(self._outputs)} (pass ignore_missing=True to skip it)"
                )
            pre = self._outputs[k].preprocessor
            if isinstance(v, OutputData):
                od = OutputData(v.data, v.err if v.has_err else None, pre, True)
            else:
                od = OutputData(v, None, pre, True)
            out[k] = od.unprocess()
        if not out:
            raise ConfigError("data: nothing to unprocess")
        return LuxData(**out)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.data.shape)}" for k, v in self._outputs.items())
        return f"LuxData({inner})"


class PolluxData(LuxData):
    """Upstream's name of `LuxData`, with upstream's check: every value is an `OutputData`.

    Raises:
        ConfigTypeError: (a `ValueError` and a `TypeError`) for a value that is
            not an `OutputData` (`LuxData` converts arrays instead).
        ShapeError: (a `ValueError`) when outputs disagree on the number of objects.

    Example:
        >>> import numpy as np
        >>> d = PolluxData(flux=OutputData(np.ones((3, 2))))
        >>> isinstance(d, LuxData), len(d)
        (True, 3)
    """

    def __init__(self, **outputs: OutputData):
        for name, val in outputs.items():
            if not isinstance(val, OutputData):
                raise ConfigTypeError(
                    f"outputs: {name!r} must be an OutputData, not {type(val).__name__} "
                    "(LuxData converts arrays)"
                )
        super().__init__(**outputs)
