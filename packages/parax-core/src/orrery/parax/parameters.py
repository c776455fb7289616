"""Parameter factories with ready-made distributions.

Sequences give vector parameters. Every distribution argument is cast with
`jnp.asarray` (distreqx does not accept Python floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from distreqx.distributions import Normal as _Normal
from distreqx.distributions import Uniform as _Uniform
from jaxtyping import Array, ArrayLike

from orrery.interface import ConfigError, ShapeError, ValueDomainError

from ._errors import ConfigTypeError
from ._generations import refuse_under_differentiation, refuse_v011_variable
from ._util import as_float_array, is_concrete
from .parameter import Parameter

__all__ = [
    "CenteredUniform",
    "Fixed",
    "Free",
    "Normal",
    "RelativeNormal",
    "RelativeUniform",
    "Uniform",
]

Number = ArrayLike | Sequence[float] | Sequence[Sequence[float]]
"""A number, an array, or a (nested) list of numbers."""


def _pair(a: Number, b: Number, names: tuple[str, str]) -> tuple[Array, Array]:
    out = []
    for value, name in zip((a, b), names, strict=True):
        try:
            arr = as_float_array(value)
        except TypeError:
            raise ConfigTypeError(
                f"{name}: expected a number or a sequence of numbers, got {type(value).__name__}"
            ) from None
        if is_concrete(arr) and not np.isfinite(np.asarray(arr)).all():
            raise ValueDomainError(
                f"{name}: expected finite numbers, got {np.asarray(arr).tolist()}"
            )
        out.append(arr)
    try:
        first, second = jnp.broadcast_arrays(*out)
    except ValueError:
        raise ShapeError(
            f"{names[0]}, {names[1]}: shapes {out[0].shape} and {out[1].shape} do not broadcast"
        ) from None
    return first, second


def _has_latent(kwargs: dict[str, Any]) -> bool:
    return "latent_value" in kwargs or "latent" in kwargs


def _default(value: Number | None, default: Number, kwargs: dict[str, Any]) -> Number | None:
    """`value`, else `default` unless a latent value is given (parax 0.4.11's factories)."""
    return default if value is None and not _has_latent(kwargs) else value


def _need_a_value(value: Number | None, kwargs: dict[str, Any], name: str) -> None:
    if value is None and not _has_latent(kwargs):
        raise ConfigError(f"{name}: give value or latent_value")


def _require(cond: ArrayLike, message: str) -> None:
    if is_concrete(cond) and not bool(jnp.all(cond)):
        raise ValueDomainError(message)


def Uniform(low: Number, high: Number, value: Number | None = None, **kwargs: Any) -> Parameter:
    """A parameter with a uniform distribution on ``[low, high]`` and those bounds.

    Args:
        low: lower bounds (a number or a sequence for a vector parameter).
        high: upper bounds, finite and greater than `low`.
        value: initial value inside the bounds; the midpoint by default.
        **kwargs: forwarded to `Parameter`.

    Returns:
        The `Parameter`.

    Raises:
        ValueDomainError: non-finite bounds, ``high <= low``, or a value outside them.

    Example:
        >>> p = Uniform(0.0, 4.0)
        >>> float(p.value), p.bounds.tolist()
        (2.0, [0.0, 4.0])
    """
    lo, hi = _pair(low, high, ("low", "high"))
    _require(
        hi > lo,
        f"high: need high > low, got low={np.asarray(lo).tolist()}, high={np.asarray(hi).tolist()}",
    )
    kwargs.setdefault("bounds", jnp.stack([lo, hi], axis=-1))
    value = _default(value, (lo + hi) / 2, kwargs)
    return Parameter(value, distribution=_Uniform(lo, hi), **kwargs)


def Normal(mean: Number, std: Number, value: Number | None = None, **kwargs: Any) -> Parameter:
    """A parameter with a normal distribution (value defaults to the mean).

    Args:
        mean: the mean (a number or a sequence for a vector parameter).
        std: the standard deviation, finite and positive.
        value: initial value; the mean by default.
        **kwargs: forwarded to `Parameter`.

    Returns:
        The `Parameter`.

    Raises:
        ValueDomainError: a non-finite mean or std, or ``std <= 0``.

    Example:
        >>> float(Normal(1.0, 0.5).value)
        1.0
    """
    mu, sd = _pair(mean, std, ("mean", "std"))
    _require(sd > 0, f"std: must be positive, got {np.asarray(sd).tolist()}")
    return Parameter(_default(value, mu, kwargs), distribution=_Normal(mu, sd), **kwargs)


def CenteredUniform(
    mean: Number, half_width: Number, *args: Number | None, **kwargs: Any
) -> Parameter:
    """Uniform on ``[mean - half_width, mean + half_width]``, value at the mean.

    Args:
        mean: the centre (a number or a sequence for a vector parameter).
        half_width: the half-width, positive.
        *args: passed to `Uniform` (the value).
        **kwargs: passed to `Parameter`.

    Returns:
        The `Parameter`.

    Raises:
        ValueDomainError: non-finite arguments or ``half_width <= 0``.
    """
    mu, hw = _pair(mean, half_width, ("mean", "half_width"))
    _require(hw > 0, f"half_width: must be positive, got {np.asarray(hw).tolist()}")
    return Uniform(mu - hw, mu + hw, *args, **kwargs)


def RelativeUniform(
    mean: Number, deviation_fraction: Number, *args: Number | None, **kwargs: Any
) -> Parameter:
    """Uniform on ``mean * (1 ± deviation_fraction)`` (sorted for negative means).

    Args:
        mean: the centre, non-zero (a number or a sequence for a vector parameter).
        deviation_fraction: the relative half-width, positive (0.1 gives ±10%).
        *args: passed to `Uniform` (the value).
        **kwargs: passed to `Parameter`.

    Returns:
        The `Parameter`, valued at `mean`.

    Raises:
        ValueDomainError: non-finite arguments, ``deviation_fraction <= 0`` or a zero mean.
    """
    mu, f = _pair(mean, deviation_fraction, ("mean", "deviation_fraction"))
    _require(f > 0, f"deviation_fraction: must be positive, got {np.asarray(f).tolist()}")
    _require(mu != 0, "mean: a relative width needs a non-zero mean, got 0")
    a, b = mu * (1 - f), mu * (1 + f)
    if not args and not _has_latent(kwargs):  # a positional value (parax 0.4's *args to
        kwargs.setdefault("value", mu)  # Uniform) or a latent value wins over the default
    return Uniform(jnp.minimum(a, b), jnp.maximum(a, b), *args, **kwargs)


def RelativeNormal(mean: Number, std_fraction: Number, **kwargs: Any) -> Parameter:
    """Normal with ``std = |mean| * std_fraction``.

    Args:
        mean: the mean, non-zero (a number or a sequence for a vector parameter).
        std_fraction: the standard deviation as a fraction of ``|mean|``, positive.
        **kwargs: passed to `Normal`.

    Returns:
        The `Parameter`, valued at `mean`.

    Raises:
        ValueDomainError: non-finite arguments, ``std_fraction <= 0`` or a zero mean.
    """
    mu, f = _pair(mean, std_fraction, ("mean", "std_fraction"))
    _require(f > 0, f"std_fraction: must be positive, got {np.asarray(f).tolist()}")
    _require(mu != 0, "mean: a relative std needs a non-zero mean, got 0")
    return Normal(mu, jnp.abs(mu) * f, **kwargs)


def Fixed(value: Number | None = None, **kwargs: Any) -> Parameter:
    """A fixed parameter (`partition` keeps it out of the trainable half).

    parax 0.4's meaning: gradients still pass through its value. parax 0.11's `Fixed`
    (a stop-gradient variable) is `orrery.parax.v011.Fixed`.

    Args:
        value: the physical value (or give `latent_value` instead).
        **kwargs: passed to `Parameter`.

    Returns:
        The `Parameter`.

    Raises:
        ConfigError: neither `value` nor `latent_value` given; `value` is being
            differentiated (inside `jax.grad`, where the two generations give different
            gradients) or is a parax 0.11 variable.

    Example:
        >>> Fixed(3.0).fixed
        True
    """
    _need_a_value(value, kwargs, "Fixed")
    refuse_v011_variable(value, "Fixed")
    refuse_under_differentiation(value, "Fixed")
    return Parameter(value, fixed=True, **kwargs)


def Free(value: Number | None = None, n: int | None = None, **kwargs: Any) -> Parameter:
    """A free parameter.

    Args:
        value: the physical value (or give `latent_value` instead).
        n: repeat a scalar value into a vector of length `n`.
        **kwargs: passed to `Parameter`.

    Returns:
        The `Parameter`.

    Raises:
        ConfigError: neither `value` nor `latent_value` given.

    Example:
        >>> Free(1.0, n=3).shape
        (3,)
    """
    _need_a_value(value, kwargs, "Free")
    return Parameter(value, fixed=False, n=n, **kwargs)
