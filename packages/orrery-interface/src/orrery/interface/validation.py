"""Validation helpers whose messages name the argument, the expected and the actual.

They work on anything `numpy.asarray` accepts and return the array, so a
public function can validate and convert in one line::

    >>> import numpy as np
    >>> from orrery.interface.validation import check_shape
    >>> x = check_shape(np.zeros((5, 3)), (None, 3), "x")
    >>> check_shape(np.zeros((5, 2)), (None, 3), "x")
    Traceback (most recent call last):
    ...
    orrery.interface.errors.ShapeError: x: expected shape (*, 3), got (5, 2)
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .errors import ConfigError, MissingDependencyError, ShapeError, ValueDomainError

__all__ = [
    "check_choice",
    "check_finite",
    "check_float",
    "check_fraction",
    "check_ndim",
    "check_nonnegative",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_shape",
    "close_matches",
    "require",
]


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    parts = ["*" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_shape(array: Any, expected: Sequence[int | str | None], name: str) -> np.ndarray | Any:
    """Check that ``array`` has the expected shape.

    Args:
        array: anything with a ``shape`` (returned as is) or array-like
            (converted with `numpy.asarray`).
        expected: one entry per axis: an ``int`` size, ``None`` for any size,
            or a string that names a size which must be equal on every axis
            that carries the same string.
        name: the argument's name, used in the message.

    Returns:
        The array (converted when it had no ``shape``).

    Raises:
        ShapeError: when the number of axes or a size differs.
    """
    if isinstance(expected, (str, bytes)) or not isinstance(expected, Sequence):
        raise ConfigError(f"expected: expected a sequence of int, str or None, got {expected!r}")
    arr = array if hasattr(array, "shape") else np.asarray(array)
    shape = tuple(arr.shape)
    if len(shape) != len(expected):
        raise ShapeError(
            f"{name}: expected {len(expected)} dimension(s) with shape {_fmt_shape(expected)}, "
            f"got {len(shape)} with shape {_fmt_shape(shape)}"
        )
    bound: dict[str, int] = {}
    for size, want in zip(shape, expected, strict=True):
        if want is None:
            continue
        if isinstance(want, str):
            if bound.setdefault(want, size) != size:
                raise ShapeError(
                    f"{name}: expected shape {_fmt_shape(expected)} with equal sizes for "
                    f"'{want}', got {_fmt_shape(shape)}"
                )
        elif size != want:
            raise ShapeError(
                f"{name}: expected shape {_fmt_shape(expected)}, got {_fmt_shape(shape)}"
            )
    return arr


def check_ndim(array: Any, ndim: int | Iterable[int], name: str) -> np.ndarray | Any:
    """Check the number of dimensions of `array` (one value or several allowed ones).

    Args:
        array: anything with a `shape`, or array-like.
        ndim: the allowed number of dimensions, an int or several ints.
        name: the argument's name, used in the message.

    Returns:
        The array (converted when it had no `shape`).

    Raises:
        ShapeError: when the number of dimensions is not allowed.
        ConfigError: when `ndim` is not an int or ints.

    Example:
        >>> check_ndim(np.zeros((2, 3)), (1, 2), "x").shape
        (2, 3)
    """
    arr = array if hasattr(array, "shape") else np.asarray(array)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not allowed or not all(isinstance(a, int) and not isinstance(a, bool) for a in allowed):
        raise ConfigError(f"ndim: expected an int or ints, got {ndim!r}")
    if arr.ndim not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ShapeError(
            f"{name}: expected {want} dimension(s), got {arr.ndim} with shape "
            f"{_fmt_shape(tuple(arr.shape))}"
        )
    return arr


def check_finite(array: Any, name: str) -> np.ndarray:
    """Check that every value of `array` is a finite number (no NaN, no inf).

    Float and complex arrays are checked; bool and integer arrays are finite by
    construction and returned as they are. Strings and object arrays (numbers
    read from a CSV as text, lists mixing numbers and `None`) are converted to
    float64 and then checked, so `"nan"` is caught; anything that is not a
    number (and datetimes, bytes or structured dtypes) is rejected.

    The check runs on the host with NumPy; call it at the public boundary, never
    inside jitted code.

    Args:
        array: anything `numpy.asarray` accepts.
        name: the argument's name, used in the message.

    Returns:
        The array, converted to float64 when it held strings or objects.

    Raises:
        ValueDomainError: naming the argument, how many values are bad and the
            first bad index, or which value is not a number.

    Example:
        >>> check_finite(np.array(["1.5", "2"]), "labels")
        array([1.5, 2. ])
        >>> check_finite(np.array(["1.5", "nan"]), "labels")
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ValueDomainError: labels: expected finite values, got 1 ...
    """
    arr = np.asarray(array)
    if arr.dtype.kind in "biu":
        return arr
    if arr.dtype.kind in "OUS":
        arr = _to_float(arr, name)
    elif arr.dtype.kind not in "fc":
        raise ValueDomainError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueDomainError(
            f"{name}: expected finite values, got {int(bad.sum())} non-finite value(s) "
            f"(first at index {first}: {arr[first]!r})"
        )
    return arr


def _to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert a str/bytes/object array to float64 or say which entry is not a number."""
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        pass
    for index in np.ndindex(arr.shape):
        value = arr[index]
        try:
            float(value.decode() if isinstance(value, bytes) else value)
        except (TypeError, ValueError):
            raise ValueDomainError(
                f"{name}: expected numbers, got {value!r} at index {index} (dtype {arr.dtype})"
            ) from None
    raise ValueDomainError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")


def check_nonnegative(array: Any, name: str) -> np.ndarray:
    """Check that every value of `array` is finite and `>= 0` (see `check_finite`).

    Args:
        array: anything `numpy.asarray` accepts.
        name: the argument's name, used in the message.

    Returns:
        The array (converted to float64 when it held strings or objects).

    Raises:
        ValueDomainError: naming the argument and the first bad index.

    Example:
        >>> check_nonnegative([0.0, 2.5], "sigma")
        array([0. , 2.5])
    """
    arr = check_finite(array, name)
    neg = arr < 0
    if np.any(neg):
        first = tuple(int(i) for i in np.argwhere(neg)[0])
        raise ValueDomainError(
            f"{name}: expected non-negative values, got {int(neg.sum())} negative value(s) "
            f"(first at index {first}: {arr[first]!r})"
        )
    return arr


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Check that `value` is an integer `>= minimum` and return it as `int`.

    Args:
        value: the value; `bool` is not accepted as an integer.
        name: the argument's name, used in the message.
        minimum: the smallest allowed value.

    Returns:
        The value as a Python `int`.

    Raises:
        ConfigError: when it is not an integer or is too small.

    Example:
        >>> check_positive_int(np.int64(3), "num_steps")
        3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _as_real(value: Any) -> float | None:
    """`value` as a float when it is one real number (not bool), else None.

    Accepted: Python and NumPy ints and floats, and 0-d arrays of a real dtype
    (NumPy, or any array library whose dtype NumPy understands, such as JAX
    when the value is concrete, bfloat16 included). A traced or symbolic value
    is not a number yet.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):
        try:
            dtype = np.dtype(value.dtype)
            # ml_dtypes' bfloat16 and float8 types (JAX) are void-kind to NumPy
            if dtype.kind not in "iuf" and not dtype.name.startswith(("bfloat", "float")):
                return None
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def _interval(minimum: float | None, maximum: float | None, lo_in: bool, hi_in: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'[' if lo_in else '('}{minimum:g}, {maximum:g}{']' if hi_in else ')'}"
    if minimum is not None:
        return f"{'>=' if lo_in else '>'} {minimum:g}"
    if maximum is not None:
        return f"{'<=' if hi_in else '<'} {maximum:g}"
    return "(any finite value)"


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    include_minimum: bool = True,
    include_maximum: bool = True,
) -> float:
    """Check that a scalar setting is a finite real number in a range; return it as `float`.

    For options and hyperparameters (a learning rate, a weight, a jitter): a
    bad value is a `ConfigError`. Data arrays are checked with `check_finite`
    and `check_nonnegative` instead, which raise `ValueDomainError` (see the
    table in `orrery.interface.errors`).

    Args:
        value: a Python or NumPy int or float, or a 0-d real array; `bool` is
            not accepted as a number.
        name: the argument's name, used in the message.
        minimum: the lower bound, or `None` for none.
        maximum: the upper bound, or `None` for none.
        include_minimum: whether `minimum` itself is allowed.
        include_maximum: whether `maximum` itself is allowed.

    Returns:
        The value as a Python `float`.

    Raises:
        ConfigError: when `value` is not a real number, is NaN or infinite, or
            lies outside the range; the message names the argument and the range.

    Example:
        >>> check_float(np.float32(0.5), "dropout", minimum=0, maximum=1)
        0.5
        >>> check_float(1.5, "dropout", minimum=0, maximum=1, include_maximum=False)
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ConfigError: dropout: expected a finite number in [0, 1), got 1.5
    """
    want = _interval(minimum, maximum, include_minimum, include_maximum)
    number = _as_real(value)
    if number is None:
        raise ConfigError(f"{name}: expected a finite number {want}, got {value!r}")
    below = minimum is not None and (
        number < minimum or (number == minimum and not include_minimum)
    )
    above = maximum is not None and (
        number > maximum or (number == maximum and not include_maximum)
    )
    if not np.isfinite(number) or below or above:
        raise ConfigError(f"{name}: expected a finite number {want}, got {number!r}")
    return number


def check_positive_float(value: Any, name: str) -> float:
    """Check that a scalar setting is a finite number `> 0` (see `check_float`).

    Raises:
        ConfigError: naming the argument.

    Example:
        >>> check_positive_float(1e-3, "learning_rate")
        0.001
        >>> check_positive_float(0, "learning_rate")
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ConfigError: learning_rate: expected a finite number > 0, got 0.0
    """
    return check_float(value, name, minimum=0, include_minimum=False)


def check_nonnegative_float(value: Any, name: str) -> float:
    """Check that a scalar setting is a finite number `>= 0` (see `check_float`).

    Raises:
        ConfigError: naming the argument.

    Example:
        >>> check_nonnegative_float(np.array(0.0), "weight_decay")
        0.0
    """
    return check_float(value, name, minimum=0)


def check_fraction(
    value: Any, name: str, *, include_zero: bool = False, include_one: bool = True
) -> float:
    """Check that a scalar setting is a fraction: in `(0, 1]` by default (see `check_float`).

    Args:
        value: the value.
        name: the argument's name, used in the message.
        include_zero: allow 0 (`[0, 1]` or `[0, 1)`).
        include_one: allow 1 (`(0, 1]`, the default, or `[0, 1]`).

    Raises:
        ConfigError: naming the argument and the interval.

    Example:
        >>> check_fraction(0.2, "validation_fraction", include_zero=True, include_one=False)
        0.2
        >>> check_fraction(0.0, "subsample")
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ConfigError: subsample: expected a finite number in (0, 1], got 0.0
    """
    return check_float(
        value,
        name,
        minimum=0,
        maximum=1,
        include_minimum=include_zero,
        include_maximum=include_one,
    )


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to `n` candidates that look like `word` (for "did you mean").

    Args:
        word: the word given.
        candidates: the valid words.
        n: the most matches to return.

    Returns:
        The close matches, best first.

    Example:
        >>> close_matches("adma", ["adam", "sgd"])
        ['adam']
    """
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def check_choice(value: Any, choices: Iterable[Any], name: str) -> Any:
    """Check that `value` is one of `choices`; suggest close matches when not.

    Args:
        value: the value given.
        choices: the allowed values.
        name: the argument's name, used in the message.

    Returns:
        The value.

    Raises:
        ConfigError: naming the allowed values (and close matches of a str).

    Example:
        >>> check_choice("skip", ["raise", "skip"], "on_nonfinite")
        'skip'
    """
    options = list(choices)
    if value in options:
        return value
    hint = ""
    if isinstance(value, str):
        near = close_matches(value, [str(c) for c in options])
        if near:
            hint = f"; did you mean {' or '.join(repr(m) for m in near)}?"
    raise ConfigError(
        f"{name}: expected one of {', '.join(repr(c) for c in options)}, got {value!r}{hint}"
    )


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import an optional dependency or explain which extra provides it.

    Args:
        module: the module to import, e.g. ``"matplotlib.pyplot"``.
        extra: the pip extra that installs it, e.g. ``"lux-models[plot]"``.
        feature: what needs it, used in the message.

    Raises:
        MissingDependencyError: (an ``ImportError``) naming the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{feature} needs the optional dependency '{top}', which is not installed; "
            f"install it with: pip install '{extra}'"
        ) from err
