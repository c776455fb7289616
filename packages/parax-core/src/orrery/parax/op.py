"""Built-in operators: building blocks for composable computation graphs.

Every operator here is an `orrery.parax.Operator`: it is called with the same
``(*args, **kwargs)`` as the graph it belongs to and passes them on to its
child operators. Operands that are not operators (numbers, arrays, pytrees)
are constants. Operators whose name describes an array operation (`Derivative`,
`Diagonal`, `Mask`, `Reduce`, `Stack`, …) apply it to every leaf when a child
returns a pytree.

Parameter names: the ``operator`` field of single-operand operators (and the
``fn`` of `Lambda`) is transparent, so wrapping a model in ``Sum``, ``Index``,
``Derivative``, … does not change its parameter names; `Binary` (``left_`` /
``right_``), `Stack` (``operators_<i>_``) and `Where` keep their segments so the
two sides of an expression stay distinct.

Example:
    >>> import jax.numpy as jnp
    >>> import orrery.parax.op as op
    >>> s = op.Lambda(lambda s_params, freq: s_params)   # (f, n, n) matrices
    >>> worst_match = op.Reduce(abs(op.Diagonal(s)), jnp.max, axis=-1)
    >>> leakage = op.Sum(abs(op.OffDiagonal(s, n_ports=2)) ** 2, axis=-1)
    >>> loss = worst_match + 0.1 * leakage           # still an operator
"""

from __future__ import annotations

import operator as _pyop
from collections.abc import Callable, Mapping, Sequence
from typing import Unpack, cast

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, PyTree

from orrery.interface import ShapeError, ValueDomainError, close_matches

from ._errors import ConfigAttributeError, ConfigTypeError
from ._field import field
from ._op_tree import (
    BaseFields,
    FrozenArray,
    as_value,
    freeze_array,
    is_value_leaf,
    tree_binary,
    tree_unary,
    unwrap_callable,
    wrap_callable,
)
from .operator import (
    Binary,
    Index,
    Leafwise,
    Map,
    Operand,
    Operator,
    OpInputs,
    OpOutputs,
    evaluate,
    set_base_fields,
)

__all__ = [
    "Binary",
    "Constant",
    "Derivative",
    "Diagonal",
    "Flatness",
    "Index",
    "Lambda",
    "Leafwise",
    "Map",
    "Mask",
    "Method",
    "Negate",
    "OffDiagonal",
    "Reduce",
    "Stack",
    "Sum",
    "Where",
]


def _static_int(value: object, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigTypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueDomainError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _static_axis(axis: object, name: str = "axis") -> int | tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(_static_int(a, name) for a in axis)
    return _static_int(axis, name)


# ============================================================================ elementary


class Constant(Operator[OpInputs, OpOutputs]):
    """Ignores its inputs and returns a fixed value (any pytree).

    Args:
        value: the value returned on every call. Arrays in it are leaves of the
            operator, so they can be differentiated or optimised.
    """

    value: PyTree

    def __init__(self, value: PyTree, **kwargs: Unpack[BaseFields]):
        self.value = value
        set_base_fields(self, kwargs, "Constant")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return self.value


class Lambda(Operator[OpInputs, OpOutputs]):
    """Wraps a callable that takes the same inputs as the operator graph.

    Args:
        fn: called as ``fn(*args, **kwargs)``. A plain function is held as
            static data (a leafless module) so the operator can be an
            argument of ``jax.jit``; an equinox module keeps its arrays as leaves.

    Example:
        >>> f = Lambda(lambda x, y: x * y)
        >>> (f + 1)(2.0, 3.0)
        7.0
    """

    fn: Callable = field(transparent=True)

    def __init__(self, fn: Callable[OpInputs, OpOutputs], **kwargs: Unpack[BaseFields]):
        self.fn = wrap_callable(fn, "Lambda fn")
        set_base_fields(self, kwargs, "Lambda")

    @property
    def function(self) -> Callable:
        """The wrapped callable as given by the user."""
        return unwrap_callable(self.fn)

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return self.fn(*args, **kwargs)


class Method(Operator[OpInputs, OpOutputs]):
    """Calls a method of the first argument with the remaining arguments.

    ``Method("loss")(model, x, y)`` is ``model.loss(x, y)``. Dotted paths reach
    nested attributes: ``Method("head.predict")(model, x)`` is ``model.head.predict(x)``.

    Args:
        path: the method's name or dotted path.
    """

    path: str = field(static=True)

    def __init__(self, path: str, **kwargs: Unpack[BaseFields]):
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise ValueDomainError(f"Method path must be a non-empty dotted name, got {path!r}")
        self.path = path
        set_base_fields(self, kwargs, "Method")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        if not args:
            raise ConfigTypeError(
                f"Method({self.path!r}) needs the object as its first positional argument"
            )
        obj = args[0]
        target = obj
        for part in self.path.split("."):
            if not hasattr(target, part):
                names = [n for n in dir(target) if not n.startswith("_")]
                hint = close_matches(part, names)
                raise ConfigAttributeError(
                    f"Method({self.path!r}): {type(target).__name__} has no attribute {part!r}"
                    + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
                )
            target = getattr(target, part)
        if not callable(target):
            raise ConfigTypeError(f"Method({self.path!r}): attribute is not callable ({target!r})")
        # A looked-up method returns what the caller's `Method[..., OpOutputs]` says it does.
        return cast(OpOutputs, target(*args[1:], **kwargs))


class Where(Operator[OpInputs, OpOutputs]):
    """Chooses between two branches according to a condition.

    A scalar condition (``ndim == 0``) selects a branch with ``jax.lax.cond``,
    so only the chosen branch runs and is differentiated (under ``vmap`` JAX
    turns this into a select that runs both). An array condition selects elementwise with
    ``jnp.where``, broadcast over every leaf of the branches' outputs (both
    branches are evaluated; mind NaNs in the unused one when differentiating).
    Branch outputs of different shapes or dtypes are broadcast and promoted to
    a common one, so ``Where(op > 0, op, 0.0)`` works.

    Args:
        condition: an operator returning a boolean (or a constant).
        true_branch: an operator (or constant) used where the condition holds.
        false_branch: an operator (or constant) used elsewhere.
    """

    condition: Operand
    true_branch: Operand
    false_branch: Operand

    def __init__(
        self,
        condition: Operand,
        true_branch: Operand,
        false_branch: Operand,
        **kwargs: Unpack[BaseFields],
    ):
        self.condition = condition
        self.true_branch = true_branch
        self.false_branch = false_branch
        set_base_fields(self, kwargs, "Where")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        cond = as_value(evaluate(self.condition, args, kwargs))
        if not is_value_leaf(cond):
            raise ConfigTypeError(
                f"Where condition must be a single boolean scalar or array, "
                f"got a pytree {jax.tree.structure(cond)}"
            )
        cond = jnp.asarray(cond)
        if cond.ndim > 0:
            on_true = evaluate(self.true_branch, args, kwargs)
            on_false = evaluate(self.false_branch, args, kwargs)
            return tree_binary(lambda t, f: jnp.where(cond, t, f), on_true, on_false, "Where")

        def run_true() -> PyTree:
            return evaluate(self.true_branch, args, kwargs)

        def run_false() -> PyTree:
            return evaluate(self.false_branch, args, kwargs)

        # lax.cond needs identical output types: work them out abstractly first.
        shape_t, shape_f = jax.eval_shape(run_true), jax.eval_shape(run_false)
        target = tree_binary(
            lambda t, f: jax.ShapeDtypeStruct(
                jnp.broadcast_shapes(t.shape, f.shape), jnp.result_type(t.dtype, f.dtype)
            ),
            shape_t,
            shape_f,
            "Where",
        )

        def conform(run: Callable[[], PyTree]) -> Callable[[], PyTree]:
            def branch() -> PyTree:
                out = run()
                return tree_binary(
                    lambda s, x: jnp.broadcast_to(jnp.asarray(x, s.dtype), s.shape),
                    target,
                    out,
                    "Where",
                )

            return branch

        return jax.lax.cond(cond.astype(bool), conform(run_true), conform(run_false))


# ============================================================================ array ops


class Mask(Operator[OpInputs, OpOutputs]):
    """Selects masked entries of each item along the leading axis.

    For an output of shape ``(lead, *mask.shape, *rest)`` the result has shape
    ``(lead, mask.sum(), *rest)``: item ``k`` is ``out[k][mask]``. Applied to
    every leaf of a pytree output.

    Args:
        operator: the operator (or constant) to mask.
        mask: a concrete boolean array, stored as static data.
    """

    operator: Operand = field(transparent=True)
    mask: FrozenArray = field(static=True)

    def __init__(
        self, operator: Operand, mask: Bool[ArrayLike, "..."], **kwargs: Unpack[BaseFields]
    ):
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            raise ConfigTypeError(f"Mask mask must be a boolean array, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ShapeError("Mask mask must have at least one dimension, got a scalar")
        self.operator = operator
        self.mask = freeze_array(arr, "mask")
        set_base_fields(self, kwargs, type(self).__name__)

    def _apply(self, x: ArrayLike) -> Array:
        mask = self.mask.thaw()
        x = jnp.asarray(x)
        if x.ndim < 1 + mask.ndim or x.shape[1 : 1 + mask.ndim] != mask.shape:
            dims = ", ".join(map(str, mask.shape))
            raise ShapeError(
                f"{type(self).__name__}: output must have shape (lead, {dims}, ...) to apply "
                f"a mask of shape {mask.shape}; got {x.shape}"
            )
        return x[(slice(None), *np.nonzero(mask))]

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return tree_unary(self._apply, evaluate(self.operator, args, kwargs))


class OffDiagonal(Mask):
    """Off-diagonal entries ``[k, i, j]`` with ``i != j`` of ``(lead, n, n)`` outputs.

    For S-parameters over frequency this gives the transmission terms. The result
    has shape ``(lead, n_ports * (n_ports - 1))`` in row-major order
    (``S12, S13, …, S21, S23, …``).

    Args:
        operator: the operator returning ``(lead, n_ports, n_ports)`` arrays.
        n_ports: the matrix size.
        **kwargs: other fields of the base module (e.g. ``name``).
    """

    n_ports: int = field(static=True)

    def __init__(self, operator: Operand, n_ports: int, **kwargs: Unpack[BaseFields]):
        n = _static_int(n_ports, "n_ports", minimum=1)
        super().__init__(operator, ~np.eye(n, dtype=bool), **kwargs)
        self.n_ports = n


class Diagonal(Operator[OpInputs, OpOutputs]):
    """Diagonals ``[k, i, i]`` of ``(lead, n, n)`` outputs (e.g. S-parameter reflections).

    Any number of leading axes is allowed: ``(..., n, n) -> (..., n)``, but at
    least one (a single matrix is refused, to keep the leading-axis contract).
    Applied to every leaf of a pytree output.

    Args:
        operator: the operator (or constant) returning stacks of square matrices.
    """

    operator: Operand = field(transparent=True)

    def __init__(self, operator: Operand, **kwargs: Unpack[BaseFields]):
        self.operator = operator
        set_base_fields(self, kwargs, "Diagonal")

    @staticmethod
    def _apply(x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        if x.ndim < 3 or x.shape[-1] != x.shape[-2]:
            raise ShapeError(f"Diagonal: output must have shape (lead, n, n), got {x.shape}")
        return jnp.diagonal(x, axis1=-2, axis2=-1)

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        return tree_unary(self._apply, evaluate(self.operator, args, kwargs))


class Reduce(Operator[OpInputs, OpOutputs]):
    """Reduces an operator's output with ``fn(value, axis=axis)`` (e.g. ``jnp.max``).

    Applied to every leaf of a pytree output.

    Args:
        operator: the operator (or constant) to reduce.
        fn: a reduction accepting an ``axis`` keyword (``jnp.sum``, ``jnp.mean``, …).
        axis: an int, a tuple of ints, or ``None`` for all axes.
    """

    operator: Operand = field(transparent=True)
    fn: Callable
    axis: int | tuple[int, ...] | None = field(static=True)

    def __init__(
        self,
        operator: Operand,
        fn: Callable[..., ArrayLike],
        axis: int | tuple[int, ...] | None = None,
        **kwargs: Unpack[BaseFields],
    ):
        self.operator = operator
        self.fn = wrap_callable(fn, "Reduce fn")
        self.axis = _static_axis(axis)
        set_base_fields(self, kwargs, type(self).__name__)

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        out = evaluate(self.operator, args, kwargs)
        return tree_unary(lambda x: self.fn(jnp.asarray(x), axis=self.axis), out)


class Sum(Reduce):
    """Sum of one operator's output over ``axis``, or the elementwise sum of several operators.

    ``Sum(op, axis=-1)`` reduces (all axes by default; see `Reduce`).
    ``Sum([op1, op2, 3.0])`` adds the outputs of the operators (and constants) elementwise,
    the parax 0.4.11 form; `axis` must then be left out.

    Args:
        operator: an operator (or constant) to reduce, or a list or tuple of them to add.
        axis: the axes to sum over in the one-operator form.

    Raises:
        ValueDomainError: an empty list. ConfigError: `axis` with a list of operators.

    Example:
        >>> import jax.numpy as jnp
        >>> x = Lambda(lambda v: v)
        >>> Sum([x, 2 * x, 1.0])(jnp.array([1.0, 2.0]))
        Array([4., 7.], dtype=float32)
        >>> Sum(x)(jnp.array([1.0, 2.0]))
        Array(3., dtype=float32)
    """

    def __init__(
        self,
        operator: Operand,
        axis: int | tuple[int, ...] | None = None,
        **kwargs: Unpack[BaseFields],
    ):
        if isinstance(operator, (list, tuple)):
            items = list(operator)
            if not items:
                raise ValueDomainError("operator: Sum needs at least one operator, got []")
            if axis is not None:
                raise ConfigTypeError(
                    "axis: Sum of a list of operators adds them elementwise; axis is only for "
                    "the one-operator (reduction) form"
                )
            total = items[0]
            for item in items[1:]:
                total = Binary(Leafwise("add"), total, item)
            operator, axis = total, ()
        super().__init__(operator, jnp.sum, axis, **kwargs)


class Negate(Map):
    """The negated output of an operator, leaf by leaf: ``Negate(op)(*a) == -op(*a)``.

    Args:
        operator: an operator (or constant).

    Example:
        >>> Negate(Lambda(lambda v: v))(2.0)
        -2.0
    """

    def __init__(self, operator: Operand, **kwargs: Unpack[BaseFields]):
        super().__init__(Leafwise("neg"), operator, **kwargs)


class Stack(Operator[OpInputs, OpOutputs]):
    """Stacks the outputs of several operators along a new axis.

    Outputs are broadcast to a common shape first (so constants can be mixed
    in), and pytree outputs are stacked leaf by leaf; a single value is
    broadcast over the leaves of the pytree outputs.

    Args:
        operators: a non-empty sequence of operators (or constants).
        axis: position of the new axis in the result (default: last).
    """

    operators: tuple
    axis: int = field(static=True)

    def __init__(self, operators: Sequence[Operand], axis: int = -1, **kwargs: Unpack[BaseFields]):
        if isinstance(operators, Operator) or not isinstance(operators, Sequence):
            raise ConfigTypeError(
                f"Stack operators must be a sequence of operators, got {type(operators).__name__}"
            )
        if len(operators) == 0:
            raise ValueDomainError("Stack needs at least one operator, got an empty sequence")
        self.operators = tuple(operators)
        self.axis = _static_int(axis, "axis")
        set_base_fields(self, kwargs, "Stack")

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        outs = [evaluate(o, args, kwargs) for o in self.operators]
        trees = [o for o in outs if not is_value_leaf(o)]

        def stack(*xs: ArrayLike) -> PyTree:
            return jnp.stack(jnp.broadcast_arrays(*map(as_value, xs)), axis=self.axis)

        if not trees:
            return stack(*outs)
        ref = jax.tree.structure(trees[0], is_leaf=is_value_leaf)
        full = []
        for i, o in enumerate(outs):
            if is_value_leaf(o):
                full.append(jax.tree.unflatten(ref, [o] * ref.num_leaves))
            elif jax.tree.structure(o, is_leaf=is_value_leaf) != ref:
                raise ShapeError(
                    f"Stack: output {i} has pytree structure "
                    f"{jax.tree.structure(o, is_leaf=is_value_leaf)}, expected {ref}"
                )
            else:
                full.append(o)
        return jax.tree.map(stack, *full, is_leaf=is_value_leaf)


class Derivative(Operator[OpInputs, OpOutputs]):
    """Numerical derivative of an operator's output along one axis.

    The spacing is read from the inputs: ``getattr(args[arg_index], step_attr)``
    (a dotted path, or a key when that argument is a mapping; a string
    ``arg_index`` names a keyword argument instead). It may be a scalar step or
    the 1-D coordinates along ``axis`` (possibly non-uniform). The derivative
    uses ``jnp.gradient`` (second-order central differences inside, first-order
    one-sided at the ends) and is applied ``order`` times, to every leaf.

    Args:
        operator: the operator (or constant) to differentiate.
        step_attr: attribute holding the step or the coordinates, e.g. ``"f"``.
        axis: the axis to differentiate along.
        order: how many times to differentiate (>= 1).
        arg_index: which positional argument (int) or keyword argument (str)
            holds the coordinates.

    Example:
        >>> d = Derivative(Lambda(lambda y, grid: y), "f")
        >>> d(jnp.array([0.0, 1.0, 4.0]), {"f": jnp.array([0.0, 1.0, 2.0])})
        Array([1., 2., 3.], dtype=float32)
    """

    operator: Operand = field(transparent=True)
    step_attr: str = field(static=True)
    axis: int = field(static=True)
    order: int = field(static=True)
    arg_index: int | str = field(static=True)

    def __init__(
        self,
        operator: Operand,
        step_attr: str,
        axis: int = 0,
        order: int = 1,
        arg_index: int | str = 1,
        **kwargs: Unpack[BaseFields],
    ):
        if not isinstance(step_attr, str) or not step_attr:
            raise ValueDomainError(f"step_attr must be a non-empty string, got {step_attr!r}")
        if not isinstance(arg_index, str):
            arg_index = _static_int(arg_index, "arg_index")
        self.operator = operator
        self.step_attr = step_attr
        self.axis = _static_int(axis, "axis")
        self.order = _static_int(order, "order", minimum=1)
        self.arg_index = arg_index
        set_base_fields(self, kwargs, type(self).__name__)

    def _spacing(self, args: tuple[object, ...], kwargs: Mapping[str, object]) -> ArrayLike:
        name = type(self).__name__
        if isinstance(self.arg_index, str):
            if self.arg_index not in kwargs:
                raise ConfigTypeError(f"{name}: keyword argument {self.arg_index!r} was not given")
            obj = kwargs[self.arg_index]
        else:
            try:
                obj = args[self.arg_index]
            except IndexError:
                raise ConfigTypeError(
                    f"{name}: arg_index={self.arg_index} but only {len(args)} positional "
                    "argument(s) were given"
                ) from None
        if isinstance(obj, Mapping) and self.step_attr in obj:
            return obj[self.step_attr]
        try:
            return _pyop.attrgetter(self.step_attr)(obj)
        except AttributeError:
            raise ConfigAttributeError(
                f"{name}: argument {self.arg_index!r} ({type(obj).__name__}) has no attribute "
                f"{self.step_attr!r} to take the spacing from"
            ) from None

    def _apply(self, x: ArrayLike, spacing: ArrayLike) -> Array:
        arr = jnp.asarray(x)
        name = type(self).__name__
        if arr.ndim == 0 or not -arr.ndim <= self.axis < arr.ndim:
            raise ShapeError(f"{name}: axis {self.axis} is out of range for shape {arr.shape}")
        n = arr.shape[self.axis]
        if n < 2:
            raise ShapeError(f"{name}: needs at least 2 points along axis {self.axis}, got {n}")
        spacing = jnp.asarray(spacing)
        if spacing.ndim > 1 or (spacing.ndim == 1 and spacing.shape[0] != n):
            raise ShapeError(
                f"{name}: {self.step_attr!r} must be a scalar step or {n} coordinates, "
                f"got shape {spacing.shape}"
            )
        for _ in range(self.order):
            arr = jnp.asarray(jnp.gradient(arr, spacing, axis=self.axis))
        return arr

    def __call__(self, *args: OpInputs.args, **kwargs: OpInputs.kwargs) -> OpOutputs:
        out = evaluate(self.operator, args, kwargs)
        spacing = self._spacing(args, kwargs)
        return tree_unary(lambda x: self._apply(x, spacing), out)


class Flatness(Derivative):
    """Derivative along ``axis``: how far an output is from flat.

    This returns the derivative itself (same shape as the output), not a scalar
    penalty; zero means flat. Build the penalty you want from it, e.g.
    ``Reduce(Flatness(gain, "f") ** 2, jnp.mean)``.

    Args:
        operator: the operator (or constant) to differentiate.
        step_attr: attribute holding the step or the coordinates, as in `Derivative`.
        axis: the axis to differentiate along.
        order: how many times to differentiate; 1 (the first derivative) by default,
            as in parax 0.4.
        arg_index: which positional (int) or keyword (str) argument holds the coordinates.
        **kwargs: other fields of the base module (e.g. ``name``).
    """

    def __init__(
        self,
        operator: Operand,
        step_attr: str,
        axis: int = 0,
        order: int = 1,
        arg_index: int | str = 1,
        **kwargs: Unpack[BaseFields],
    ):
        super().__init__(operator, step_attr, axis=axis, order=order, arg_index=arg_index, **kwargs)
