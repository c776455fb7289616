"""Bijectors missing from distreqx 0.0.3: `Exp`, `Softplus`, `Interval`, `Inverse`.

They follow the distreqx (ihoop) rules: concrete classes are final, only abstract
methods are implemented, and `_is_constant_jacobian` / `_is_constant_log_det` are set.
Every constructor argument is cast with `jnp.asarray`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from distreqx.bijectors import (
    AbstractBijector,
)
from jax.core import Tracer
from jaxtyping import Array

from orrery.interface import ValueDomainError

from ._elementwise import AbstractElementwise
from ._errors import ConfigTypeError

__all__ = ["Exp", "Interval", "Inverse", "Softplus"]


class Exp(AbstractElementwise, strict=True):
    """``y = exp(x)``: maps the real line to positive numbers."""

    _is_constant_jacobian: bool
    _is_constant_log_det: bool

    def __init__(self) -> None:
        self._is_constant_jacobian = False
        self._is_constant_log_det = False

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Computes ``y = exp(x)`` and ``log|dy/dx| = x``."""
        return jnp.exp(x), x

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Computes ``x = log(y)`` and ``log|dx/dy| = -log(y)``."""
        x = jnp.log(y)
        return x, -x

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Exp


class Softplus(AbstractElementwise, strict=True):
    """``y = log(1 + exp(x))``: maps the real line to positive numbers, linear for large x."""

    _is_constant_jacobian: bool
    _is_constant_log_det: bool

    def __init__(self) -> None:
        self._is_constant_jacobian = False
        self._is_constant_log_det = False

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """``dy/dx = sigmoid(x)``, so ``log|dy/dx| = -softplus(-x)``."""
        return jax.nn.softplus(x), -jax.nn.softplus(-x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """``x = y + log(-expm1(-y))`` (stable for small and large y)."""
        x = y + jnp.log(-jnp.expm1(-y))
        return x, jax.nn.softplus(-x)

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Softplus


class Interval(AbstractElementwise, strict=True):
    """``y = low + (high - low) * sigmoid(x)``: maps the real line onto ``(low, high)``.

    Args:
        low: lower bound (scalar or array, broadcast against the input).
        high: upper bound, ``high > low``.

    Raises:
        ValueDomainError: non-finite bounds or ``high <= low``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(Interval(0.0, 4.0).forward(jnp.asarray(0.0)))
        2.0
    """

    low: Array
    high: Array
    _is_constant_jacobian: bool
    _is_constant_log_det: bool

    def __init__(self, low: Array | float, high: Array | float) -> None:
        self.low = jnp.asarray(low)
        self.high = jnp.asarray(high)
        if not isinstance(self.low, Tracer) and not isinstance(self.high, Tracer):
            lo, hi = np.asarray(self.low), np.asarray(self.high)
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                raise ValueDomainError(f"low, high: expected finite bounds, got {lo}, {hi}")
            if not (hi > lo).all():
                raise ValueDomainError(f"high: need high > low, got low={lo}, high={hi}")
        self._is_constant_jacobian = False
        self._is_constant_log_det = False

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        width = self.high - self.low
        y = self.low + width * jax.nn.sigmoid(x)
        return y, jnp.log(width) - jax.nn.softplus(-x) - jax.nn.softplus(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        width = self.high - self.low
        u = (y - self.low) / width
        x = jnp.log(u) - jnp.log1p(-u)
        return x, -(jnp.log(width) - jax.nn.softplus(-x) - jax.nn.softplus(x))

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Interval and self.low is other.low and self.high is other.high


class Inverse(AbstractElementwise, strict=True):
    """The inverse of another bijector: ``forward`` is ``bijector.inverse`` and vice versa.

    Args:
        bijector: the distreqx bijector to invert.

    Raises:
        ConfigError: not a distreqx bijector (also a `TypeError`).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(Inverse(Exp()).forward(jnp.asarray(1.0))), 4)  # log(1)
        0.0
    """

    bijector: AbstractBijector
    _is_constant_jacobian: bool
    _is_constant_log_det: bool

    def __init__(self, bijector: AbstractBijector) -> None:
        if not isinstance(bijector, AbstractBijector):
            raise ConfigTypeError(
                f"bijector: expected a distreqx AbstractBijector, got {type(bijector).__name__}"
            )
        self.bijector = bijector
        self._is_constant_jacobian = bijector.is_constant_jacobian
        self._is_constant_log_det = bijector.is_constant_log_det

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return self.bijector.inverse_and_log_det(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        return self.bijector.forward_and_log_det(y)

    def same_as(self, other: AbstractBijector) -> bool:
        return type(other) is Inverse and self.bijector.same_as(other.bijector)
