"""`Operator`: a composable callable whose algebra is the algebra of its outputs."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .module import Module

if TYPE_CHECKING:
    from .op import Binary, Map

OpInputs = ParamSpec("OpInputs")
OpOutputs = TypeVar("OpOutputs")

__all__ = ["OpInputs", "OpOutputs", "Operator"]


def _binary(left: Any, right: Any, kind: str) -> Binary:
    from .op import Binary, Leafwise

    return Binary(left, right, Leafwise(kind))


def _unary(operand: Any, kind: str) -> Map:
    from .op import Leafwise, Map

    return Map(operand, Leafwise(kind))


class Operator(Module, Generic[OpInputs, OpOutputs]):
    """A composable callable: an operation on some inputs, as a parax `Module`.

    Subclasses implement ``__call__(*args, **kwargs)``. Python operators build
    new operators pointwise: ``(f + g)(*a) == f(*a) + g(*a)``, ``(2 * f)(*a) ==
    2 * f(*a)``, ``(-f)(*a) == -f(*a)``, ``(f < 0.5)(*a) == f(*a) < 0.5``. Every
    operator in an expression is called with the same ``(*args, **kwargs)``;
    anything that is not an `Operator` (a number, an array, a pytree) enters as
    a constant.

    Outputs may be pytrees: they are combined leaf by leaf with ``jax.tree.map``.
    A single value (scalar or array) is broadcast over every leaf of a pytree;
    two pytrees must have the same structure.

    Supported: ``+ - * / // % ** @`` (and their reflected forms), unary ``-``,
    ``+`` and ``abs``, ``< <= > >=``, ``& | ^ ~`` for boolean outputs, and
    indexing: ``f[:, 0]`` is ``op.Index(f, (slice(None), 0))``.

    Equality: ``==`` and ``!=`` keep their equinox meaning (structural equality
    of the two operator trees, returning a ``bool``), so operators can be
    compared, hashed and used as static data. Use `eq` / `ne` for the pointwise
    comparison of outputs.

    Example:
        >>> class Square(Operator):
        ...     def __call__(self, x):
        ...         return {"y": x**2}
        >>> h = 3 * Square() + 1.0
        >>> h(2.0)
        {'y': 13.0}
    """

    # Make NumPy defer to our reflected operators (``np_array + op``).
    __array_ufunc__ = None
    # ``op[i]`` builds an operator, so the legacy iteration protocol would never stop.
    __iter__ = None

    @abc.abstractmethod
    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        """Evaluate the operator on the shared inputs."""

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Any) -> Operator:
        return _binary(self, other, "add")

    def __radd__(self, other: Any) -> Operator:
        return _binary(other, self, "add")

    def __sub__(self, other: Any) -> Operator:
        return _binary(self, other, "sub")

    def __rsub__(self, other: Any) -> Operator:
        return _binary(other, self, "sub")

    def __mul__(self, other: Any) -> Operator:
        return _binary(self, other, "mul")

    def __rmul__(self, other: Any) -> Operator:
        return _binary(other, self, "mul")

    def __truediv__(self, other: Any) -> Operator:
        return _binary(self, other, "truediv")

    def __rtruediv__(self, other: Any) -> Operator:
        return _binary(other, self, "truediv")

    def __floordiv__(self, other: Any) -> Operator:
        return _binary(self, other, "floordiv")

    def __rfloordiv__(self, other: Any) -> Operator:
        return _binary(other, self, "floordiv")

    def __mod__(self, other: Any) -> Operator:
        return _binary(self, other, "mod")

    def __rmod__(self, other: Any) -> Operator:
        return _binary(other, self, "mod")

    def __pow__(self, other: Any) -> Operator:
        return _binary(self, other, "pow")

    def __rpow__(self, other: Any) -> Operator:
        return _binary(other, self, "pow")

    def __matmul__(self, other: Any) -> Operator:
        return _binary(self, other, "matmul")

    def __rmatmul__(self, other: Any) -> Operator:
        return _binary(other, self, "matmul")

    def __getitem__(self, indices: Any) -> Operator:
        """``op[indices]`` is ``op.Index(op, indices)``: index the output."""
        from .op import Index

        return Index(self, indices)

    # ------------------------------------------------------------------ unary
    def __neg__(self) -> Operator:
        return _unary(self, "neg")

    def __pos__(self) -> Operator:
        return _unary(self, "pos")

    def __abs__(self) -> Operator:
        return _unary(self, "abs")

    def __invert__(self) -> Operator:
        return _unary(self, "invert")

    # ------------------------------------------------------------------ comparisons
    def __lt__(self, other: Any) -> Operator:
        return _binary(self, other, "lt")

    def __le__(self, other: Any) -> Operator:
        return _binary(self, other, "le")

    def __gt__(self, other: Any) -> Operator:
        return _binary(self, other, "gt")

    def __ge__(self, other: Any) -> Operator:
        return _binary(self, other, "ge")

    def eq(self, other: Any) -> Operator:
        """Pointwise ``==`` of the outputs, as an operator (``==`` itself is structural)."""
        return _binary(self, other, "eq")

    def ne(self, other: Any) -> Operator:
        """Pointwise ``!=`` of the outputs, as an operator (``!=`` itself is structural)."""
        return _binary(self, other, "ne")

    # ------------------------------------------------------------------ logic
    def __and__(self, other: Any) -> Operator:
        return _binary(self, other, "and")

    def __rand__(self, other: Any) -> Operator:
        return _binary(other, self, "and")

    def __or__(self, other: Any) -> Operator:
        return _binary(self, other, "or")

    def __ror__(self, other: Any) -> Operator:
        return _binary(other, self, "or")

    def __xor__(self, other: Any) -> Operator:
        return _binary(self, other, "xor")

    def __rxor__(self, other: Any) -> Operator:
        return _binary(other, self, "xor")
