"""Array protocol and operators shared by every variable (each evaluates `self.value`)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array


def _forward(op: Any) -> Any:
    def method(self: Any, other: Any) -> Any:
        return op(self.value, jnp.asarray(other))

    return method


def _reverse(op: Any) -> Any:
    def method(self: Any, other: Any) -> Any:
        return op(jnp.asarray(other), self.value)

    return method


class ArrayOps:
    """Mixin: shape/dtype attributes, `__jax_array__`, indexing and arithmetic on `value`.

    The result of any operation is a plain JAX array (metadata and constraint dropped).
    """

    @property
    @abstractmethod
    def value(self) -> Array:
        """The array every operation evaluates (a subclass provides it)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def __jax_array__(self) -> Array:
        return self.value

    def __getitem__(self, key: Any) -> Array:
        return self.value[key]

    def __len__(self) -> int:
        return len(self.value)

    def __contains__(self, item: object) -> bool:
        return item in self.value

    __add__ = _forward(lambda a, b: a + b)
    __sub__ = _forward(lambda a, b: a - b)
    __mul__ = _forward(lambda a, b: a * b)
    __matmul__ = _forward(lambda a, b: a @ b)
    __truediv__ = _forward(lambda a, b: a / b)
    __floordiv__ = _forward(lambda a, b: a // b)
    __mod__ = _forward(lambda a, b: a % b)
    __divmod__ = _forward(divmod)
    __pow__ = _forward(lambda a, b: a**b)
    __radd__ = _reverse(lambda a, b: a + b)
    __rsub__ = _reverse(lambda a, b: a - b)
    __rmul__ = _reverse(lambda a, b: a * b)
    __rmatmul__ = _reverse(lambda a, b: a @ b)
    __rtruediv__ = _reverse(lambda a, b: a / b)
    __rfloordiv__ = _reverse(lambda a, b: a // b)
    __rmod__ = _reverse(lambda a, b: a % b)
    __rdivmod__ = _reverse(divmod)
    __rpow__ = _reverse(lambda a, b: a**b)

    def __neg__(self) -> Array:
        return -self.value

    def __pos__(self) -> Array:
        return +self.value

    def __abs__(self) -> Array:
        return abs(self.value)

    def __invert__(self) -> Array:
        return ~self.value

    def __complex__(self) -> complex:
        return complex(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __index__(self) -> int:
        return self.value.__index__()

    def __round__(self, ndigits: int = 0) -> Array:
        return jnp.round(self.value, ndigits)
