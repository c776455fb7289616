"""`Operator`: a composable callable whose algebra is the algebra of its outputs.

This module holds `Operator` and the elementary nodes its Python operators build
(`Leafwise`, `Binary`, `Map`, `Index`): ``f + g`` is a `Binary`, ``-f`` a `Map`, ``f[i]``
an `Index`, so they live with the class whose operators create them. `orrery.parax.op`
re-exports them next to the other built-in operators.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from types import EllipsisType
from typing import Generic, ParamSpec, TypeAlias, TypeVar, Unpack

import equinox as eqx
from jaxtyping import ArrayLike, PyTree

from orrery.interface import ValueDomainError, close_matches

from ._errors import ConfigTypeError
from ._field import field
from ._op_tree import (
    BINARY_FNS,
    UNARY_FNS,
    BaseFields,
    as_value,
    freeze_index,
    thaw_index,
    tree_binary,
    tree_unary,
    wrap_callable,
)
from .module import Module

OpInputs = ParamSpec("OpInputs")
OpOutputs = TypeVar("OpOutputs")

__all__ = ["Binary", "Index", "Leafwise", "Map", "OpInputs", "OpOutputs", "Operator"]

Operand: TypeAlias = "Operator | PyTree"
"""What an operator expression combines: another operator, or a constant (number, array, pytree)."""

Indices: TypeAlias = "int | slice | EllipsisType | str | ArrayLike | tuple[object, ...] | None"
"""What `Index` takes: as in ``array[indices]``, or a key of a dict output."""

T = TypeVar("T")


def _binary(left: Operand, right: Operand, kind: str) -> Binary:
    return Binary(Leafwise(kind), left, right)


def _unary(operand: Operand, kind: str) -> Map:
    return Map(Leafwise(kind), operand)


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
    def __add__(self, other: Operand) -> Operator:
        return _binary(self, other, "add")

    def __radd__(self, other: Operand) -> Operator:
        return _binary(other, self, "add")

    def __sub__(self, other: Operand) -> Operator:
        return _binary(self, other, "sub")

    def __rsub__(self, other: Operand) -> Operator:
        return _binary(other, self, "sub")

    def __mul__(self, other: Operand) -> Operator:
        return _binary(self, other, "mul")

    def __rmul__(self, other: Operand) -> Operator:
        return _binary(other, self, "mul")

    def __truediv__(self, other: Operand) -> Operator:
        return _binary(self, other, "truediv")

    def __rtruediv__(self, other: Operand) -> Operator:
        return _binary(other, self, "truediv")

    def __floordiv__(self, other: Operand) -> Operator:
        return _binary(self, other, "floordiv")

    def __rfloordiv__(self, other: Operand) -> Operator:
        return _binary(other, self, "floordiv")

    def __mod__(self, other: Operand) -> Operator:
        return _binary(self, other, "mod")

    def __rmod__(self, other: Operand) -> Operator:
        return _binary(other, self, "mod")

    def __pow__(self, other: Operand) -> Operator:
        return _binary(self, other, "pow")

    def __rpow__(self, other: Operand) -> Operator:
        return _binary(other, self, "pow")

    def __matmul__(self, other: Operand) -> Operator:
        return _binary(self, other, "matmul")

    def __rmatmul__(self, other: Operand) -> Operator:
        return _binary(other, self, "matmul")

    def __getitem__(self, indices: Indices) -> Operator:
        """``op[indices]`` is ``op.Index(op, indices)``: index the output."""
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
    def __lt__(self, other: Operand) -> Operator:
        return _binary(self, other, "lt")

    def __le__(self, other: Operand) -> Operator:
        return _binary(self, other, "le")

    def __gt__(self, other: Operand) -> Operator:
        return _binary(self, other, "gt")

    def __ge__(self, other: Operand) -> Operator:
        return _binary(self, other, "ge")

    def eq(self, other: Operand) -> Operator:
        """Pointwise ``==`` of the outputs, as an operator (``==`` itself is structural).

        Args:
            other: an operator or a constant.

        Returns:
            The comparison operator.
        """
        return _binary(self, other, "eq")

    def ne(self, other: Operand) -> Operator:
        """Pointwise ``!=`` of the outputs, as an operator (``!=`` itself is structural).

        Args:
            other: an operator or a constant.

        Returns:
            The comparison operator.
        """
        return _binary(self, other, "ne")

    # ------------------------------------------------------------------ logic
    def __and__(self, other: Operand) -> Operator:
        return _binary(self, other, "and")

    def __rand__(self, other: Operand) -> Operator:
        return _binary(other, self, "and")

    def __or__(self, other: Operand) -> Operator:
        return _binary(self, other, "or")

    def __ror__(self, other: Operand) -> Operator:
        return _binary(other, self, "or")

    def __xor__(self, other: Operand) -> Operator:
        return _binary(self, other, "xor")

    def __rxor__(self, other: Operand) -> Operator:
        return _binary(other, self, "xor")


# ============================================================== elementary nodes


def evaluate(node: Operand, args: tuple[PyTree, ...], kwargs: dict[str, PyTree]) -> PyTree:
    """Call ``node`` if it is an operator; otherwise it is a constant."""
    if isinstance(node, Operator):
        return node(*args, **kwargs)
    return node


def set_base_fields(obj: Module, kwargs: Mapping[str, object], cls_name: str) -> None:
    """Initialise the fields of the base `Module`: defaults, or ``name=`` and the like.

    Operators have their own ``__init__``, so the base fields must be set here for
    instances to flatten (and compare, and reload) like dataclass-built ones.
    """
    base = [f for f in dataclasses.fields(Module) if f.init]
    public = sorted(f.name for f in base if not f.name.startswith("_"))
    for key in kwargs:
        if key not in public:
            hint = close_matches(key, public)
            raise ConfigTypeError(
                f"{cls_name}() got an unexpected keyword argument {key!r}"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
            )
    for f in base:
        if f.name in kwargs:
            value = kwargs[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        object.__setattr__(obj, f.name, value)


class Leafwise(Module):
    """A named elementwise function applied leaf by leaf to pytree values.

    This is the ``fn`` that `Operator`'s Python operators put into `Binary` and
    `Map`. A single value is broadcast over every leaf of a pytree operand. It
    is stored by name, so composed graphs stay hashable and serialisable.

    Args:
        kind: one of ``add sub mul truediv floordiv mod pow matmul lt le gt ge eq
            ne and or xor`` (two operands) or ``neg pos abs invert`` (one operand).

    Example:
        >>> Leafwise("add")({"a": 1.0, "b": 2.0}, 10.0)
        {'a': 11.0, 'b': 12.0}
    """

    kind: str = field(static=True)

    def __init__(self, kind: str):
        known = sorted([*BINARY_FNS, *UNARY_FNS])
        if kind not in known:
            hint = close_matches(str(kind), known)
            raise ValueDomainError(
                f"Leafwise kind must be one of {known}, got {kind!r}"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
            )
        self.kind = kind
        set_base_fields(self, {}, "Leafwise")

    def __call__(self, *values: PyTree) -> PyTree:
        if self.kind in UNARY_FNS:
            if len(values) != 1:
                raise ConfigTypeError(f"Leafwise({self.kind!r}) takes 1 value, got {len(values)}")
            return tree_unary(UNARY_FNS[self.kind], values[0])
        if len(values) != 2:
            raise ConfigTypeError(f"Leafwise({self.kind!r}) takes 2 values, got {len(values)}")
        return tree_binary(BINARY_FNS[self.kind], values[0], values[1], what=self.kind)


class _Identity(Operator):
    """Returns its first argument (used in examples)."""

    def __call__(self, x: T) -> T:
        return x


def _check_fn(fn: object, cls_name: str) -> None:
    if isinstance(fn, Operator) or not callable(fn):
        raise ConfigTypeError(
            f"{cls_name}: fn (the first argument) must be a plain callable such as "
            f"jnp.subtract, got {type(fn).__name__}; the order is {cls_name}(fn, ...) as in "
            "parax 0.4 (orrery.parax 0.1 took the callable last)"
        )


def _check_operand(x: object, cls_name: str, arg: str) -> None:
    if callable(x) and not isinstance(x, (Operator, eqx.Module)):
        raise ConfigTypeError(
            f"{cls_name}: {arg} must be an operator or a constant, got the callable "
            f"{getattr(x, '__name__', type(x).__name__)}; the callable comes first: "
            f"{cls_name}(fn, ...) as in parax 0.4 (orrery.parax 0.1 took it last)"
        )


class Binary(Operator[OpInputs, OpOutputs]):
    """Combines the outputs of two operators with ``fn(left_value, right_value)``.

    Args:
        fn: a callable of two values. For leafwise arithmetic with scalar
            broadcasting over pytrees use `Leafwise` (what ``+``, ``*``, … build).
        left: an operator, or a constant value.
        right: an operator, or a constant value.

    Raises:
        ConfigError: `fn` is an operator or not callable, or an operand is a plain
            callable (the argument order of orrery.parax 0.1); also a `TypeError`.

    Example:
        >>> import jax.numpy as jnp
        >>> Binary(jnp.subtract, 2.0, 3.0)()
        Array(-1., dtype=float32, weak_type=True)
        >>> f = Binary(jnp.maximum, _Identity(), 3.0)
        >>> f(jnp.array([1.0, 5.0]))
        Array([3., 5.], dtype=float32)
    """

    fn: Callable
    left: Operand
    right: Operand

    def __init__(
        self,
        fn: Callable[[PyTree, PyTree], PyTree],
        left: Operand,
        right: Operand,
        **kwargs: Unpack[BaseFields],
    ):
        _check_fn(fn, "Binary")
        _check_operand(left, "Binary", "left")
        _check_operand(right, "Binary", "right")
        self.fn = wrap_callable(fn, "Binary fn")
        self.left = left
        self.right = right
        set_base_fields(self, kwargs, "Binary")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return self.fn(evaluate(self.left, args, kwargs), evaluate(self.right, args, kwargs))


class Map(Operator[OpInputs, OpOutputs]):
    """Applies ``fn`` to the whole output of another operator.

    Args:
        fn: a callable of one value, given the full output (a pytree is passed
            as is; use `Leafwise` or ``jax.tree.map`` inside ``fn`` to go leafwise).
        operator: an operator (or a constant value).

    Raises:
        ConfigError: `fn` is an operator or not callable, or `operator` is a plain
            callable (the argument order of orrery.parax 0.1); also a `TypeError`.

    Example:
        >>> import jax.numpy as jnp
        >>> Map(jnp.negative, 2.0)()
        Array(-2., dtype=float32, weak_type=True)
        >>> Map(jnp.sqrt, _Identity())(4.0)
        Array(2., dtype=float32, weak_type=True)
    """

    fn: Callable
    operator: Operand = field(transparent=True)

    def __init__(
        self, fn: Callable[[PyTree], PyTree], operator: Operand, **kwargs: Unpack[BaseFields]
    ):
        _check_fn(fn, type(self).__name__)
        _check_operand(operator, type(self).__name__, "operator")
        self.fn = wrap_callable(fn, "Map fn")
        self.operator = operator
        set_base_fields(self, kwargs, type(self).__name__)

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return self.fn(evaluate(self.operator, args, kwargs))


class Index(Operator[OpInputs, OpOutputs]):
    """Indexes the output of an operator: ``operator(*a)[indices]``.

    The index is applied to the whole output, so it can also pick an entry of
    a dict or tuple output (``Index(op, "s21")``).

    Args:
        operator: the operator (or constant) to index.
        indices: an int, slice, ``None``, ``...``, key, integer/boolean array,
            or a tuple of these. It is stored as static (hashable) data, so it
            must be concrete.
    """

    operator: Operand = field(transparent=True)
    indices: Indices = field(static=True)

    def __init__(self, operator: Operand, indices: Indices, **kwargs: Unpack[BaseFields]):
        self.operator = operator
        self.indices = freeze_index(indices)
        set_base_fields(self, kwargs, "Index")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return as_value(evaluate(self.operator, args, kwargs))[thaw_index(self.indices)]
