"""Parameter factories with ready-made distributions.

Sequences give vector parameters. Every distribution argument is cast with
`jnp.asarray` (distreqx does not accept Python floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from distreqx.distributions import Normal as _Normal
from distreqx.distributions import Uniform as _Uniform

from orrery.interface import ValueDomainError

from ._util import as_float_array
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

Number = float | Sequence[float] | Any


def _pair(a: Number, b: Number) -> tuple[Any, Any]:
    a, b = as_float_array(a), as_float_array(b)
    return jnp.broadcast_arrays(a, b)


def Uniform(low: Number, high: Number, value: Any = None, **kwargs: Any) -> Parameter:
    """A parameter with a uniform distribution on ``[low, high]`` and those bounds.

    Args:
        low, high: bounds (scalars or sequences).
        value: initial value; the midpoint by default.
        **kwargs: forwarded to `Parameter`.
    """
    lo, hi = _pair(low, high)
    if bool(jnp.any(hi <= lo)):
        raise ValueDomainError(f"Uniform: need high > low, got low={lo}, high={hi}")
    kwargs.setdefault("bounds", jnp.stack([lo, hi], axis=-1))
    value = (lo + hi) / 2 if value is None else value
    return Parameter(value, distribution=_Uniform(lo, hi), **kwargs)


def Normal(mean: Number, std: Number, value: Any = None, **kwargs: Any) -> Parameter:
    """A parameter with a normal distribution (value defaults to the mean)."""
    mu, sd = _pair(mean, std)
    if bool(jnp.any(sd <= 0)):
        raise ValueDomainError(f"Normal: std must be positive, got {sd}")
    return Parameter(mu if value is None else value, distribution=_Normal(mu, sd), **kwargs)


def CenteredUniform(mean: Number, half_width: Number, *args: Any, **kwargs: Any) -> Parameter:
    """Uniform on ``[mean - half_width, mean + half_width]``, value at the mean."""
    mu, hw = _pair(mean, half_width)
    return Uniform(mu - hw, mu + hw, *args, **kwargs)


def RelativeUniform(
    mean: Number, deviation_fraction: Number, *args: Any, **kwargs: Any
) -> Parameter:
    """Uniform on ``mean * (1 ± deviation_fraction)`` (sorted for negative means)."""
    mu, f = _pair(mean, deviation_fraction)
    a, b = mu * (1 - f), mu * (1 + f)
    kwargs.setdefault("value", mu)
    return Uniform(jnp.minimum(a, b), jnp.maximum(a, b), *args, **kwargs)


def RelativeNormal(mean: Number, std_fraction: Number, **kwargs: Any) -> Parameter:
    """Normal with ``std = |mean| * std_fraction``."""
    mu, f = _pair(mean, std_fraction)
    return Normal(mu, jnp.abs(mu) * f, **kwargs)


def Fixed(value: Any, **kwargs: Any) -> Parameter:
    """A fixed parameter."""
    return Parameter(value, fixed=True, **kwargs)


def Free(value: Any, n: int | None = None, **kwargs: Any) -> Parameter:
    """A free parameter (``n`` repeats a scalar value into a vector)."""
    return Parameter(value, fixed=False, n=n, **kwargs)
