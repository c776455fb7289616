"""Variables: array-like model fields with metadata and constraints (parax 0.11).

Every variable is an `AbstractUnwrappable` whose `value` is an array; it takes part in
JAX arithmetic directly (``var + 1`` is an array) and `unwrap(model)` replaces it by
its value. `raw_value` is what optimisers and samplers see.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Iterator
from functools import reduce
from typing import Any, Self, TypeGuard

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.core import Tracer
from jaxtyping import Array, ArrayLike, Inexact, PyTree

from orrery.interface import ConfigError, ConfigTypeError

from ._base import (
    AbstractAnnotated,
    AbstractBounded,
    AbstractConstant,
    AbstractUnwrappable,
    AbstractWrappable,
    as_unwrapped,
)
from ._variable_ops import ArrayOps
from .bijectors import AbstractBijector, Chain, Inverse
from .constraints import (
    AbstractConstrainable,
    AbstractConstraint,
    RealLine,
    infer_distribution_constraint,
    intersect,
    is_constrainable,
)
from .constraints import Transformed as TransformedConstraint
from .distributions import AbstractDistribution
from .probability import AbstractProbabilistic, truncate_distribution
from .wrappers import as_opaque

__all__ = [
    "AbstractVariable",
    "Bounded",
    "Constrained",
    "Derived",
    "Fixed",
    "Param",
    "Random",
    "Real",
    "Tagged",
    "Transformed",
    "as_fixed",
    "as_param",
    "as_variable",
    "constrain_param",
    "is_param",
    "is_variable",
    "tree_named_params",
]


class AbstractVariable(ArrayOps, AbstractUnwrappable[Array]):
    """A model variable: `value` is its array; arithmetic on it gives plain arrays."""

    @property
    @abstractmethod
    def value(self) -> Array:
        """The variable's (physical) value."""

    def unwrap(self) -> Array:
        return self.value

    def as_fixed(self) -> Fixed:
        return Fixed(self)

    def __iter__(self) -> Iterator[Array]:
        return iter(self.value)


Param = AbstractVariable | Inexact[Array, "..."]
"""A parameter: a variable or an inexact JAX array."""


def is_variable(x: object) -> TypeGuard[AbstractVariable]:
    """Whether `x` is a parax 0.11 variable."""
    return isinstance(x, AbstractVariable)


def is_param(x: object) -> bool:
    """Whether `x` is a variable or an inexact array (parax 0.11's meaning).

    `orrery.parax.is_param` (parax 0.4's) is True for `Parameter` only.
    """
    return isinstance(x, AbstractVariable) or eqx.is_inexact_array(x)


def as_param(value: Any) -> AbstractVariable | Array:
    """`value` if it is a param, else ``jnp.asarray(value, dtype=float)`` (one array).

    `orrery.parax.as_param` (parax 0.4's) makes `Parameter` objects instead.
    """
    return value if is_param(value) else jnp.asarray(value, dtype=float)


class Real(AbstractVariable, AbstractWrappable[Array]):
    """A plain real variable (a placeholder for frameworks that train variables only)."""

    raw_value: Any = eqx.field(converter=as_param)

    @property
    def value(self) -> Array:
        return jnp.asarray(self.raw_value)

    def wrap(self, value: Array) -> Self:
        return eqx.tree_at(lambda m: m.raw_value, self, value)


def as_variable(value: AbstractVariable | ArrayLike) -> AbstractVariable:
    """`value` if it is a variable, else `Real(value)`."""
    return value if is_variable(value) else Real(value)


class Tagged(AbstractVariable, AbstractAnnotated[dict], AbstractWrappable[Array]):
    """A trainable variable with a `metadata` dict (static)."""

    raw_value: Any = eqx.field(converter=as_param)
    metadata: dict = eqx.field(default_factory=dict, static=True)

    @property
    def value(self) -> Array:
        return jnp.asarray(self.raw_value)

    def wrap(self, value: Array) -> Self:
        return eqx.tree_at(lambda m: m.raw_value, self, value)


class Fixed(AbstractVariable, AbstractConstant[Any], AbstractWrappable[Array]):
    """A fixed variable: `value` stops gradients, and filters treat it as a constant.

    ``jax.grad(lambda x: Fixed(x).value ** 2)(3.0)`` is 0.0. ``Fixed(Fixed(x))`` is
    ``Fixed(x)``; `free()` gives back what was fixed.
    """

    raw_value: Any = eqx.field(converter=as_param)

    def __init__(self, raw_value: AbstractVariable | ArrayLike | None = None):
        if raw_value is None:
            raise ConfigError("Fixed: raw_value is required")
        self.raw_value = raw_value.raw_value if isinstance(raw_value, Fixed) else raw_value

    def free(self) -> AbstractVariable | Array:
        return self.raw_value

    @property
    def value(self) -> Array:
        inner = self.raw_value
        inner = inner.value if isinstance(inner, AbstractVariable) else inner
        return jax.lax.stop_gradient(inner)

    def wrap(self, value: Array) -> Self:
        return eqx.tree_at(lambda m: m.raw_value, self, value)


def as_fixed(value: AbstractVariable | ArrayLike) -> Fixed:
    """`value` if already `Fixed`, else `Fixed(value)`."""
    return value if isinstance(value, Fixed) else Fixed(value)


class Derived(AbstractVariable):
    """``value = fn(raw_value)`` for any callable (one-way: not wrappable back)."""

    fn: Any = eqx.field(converter=as_opaque)
    raw_value: Any = eqx.field(converter=as_param)

    @property
    def value(self) -> Array:
        return as_unwrapped(self.fn)(jnp.asarray(self.raw_value))


class Transformed(AbstractVariable, AbstractWrappable[Array]):
    """``value = bijector.forward(raw_value)``; a `Transformed` inside is merged (`Chain`)."""

    bijector: Any = eqx.field(converter=as_opaque)
    raw_value: Any = eqx.field(converter=as_param)

    def __init__(self, bijector: AbstractBijector, raw_value: AbstractVariable | ArrayLike):
        if isinstance(raw_value, Transformed):
            bijector = Chain([bijector, as_unwrapped(raw_value.bijector)])
            raw_value = raw_value.raw_value
        self.bijector = bijector
        self.raw_value = raw_value

    @property
    def value(self) -> Array:
        return as_unwrapped(self.bijector).forward(jnp.asarray(self.raw_value))

    def wrap(self, value: Array) -> Self:
        raw = as_unwrapped(self.bijector).inverse(value)
        return eqx.tree_at(lambda m: m.raw_value, self, raw)


class Bounded(AbstractVariable, AbstractBounded[Array], AbstractWrappable[Array]):
    """An array with bounds attached (not enforced by a bijector; see `Constrained`)."""

    bounds: Any = eqx.field(converter=as_opaque)
    raw_value: Any = eqx.field(converter=jnp.asarray)

    def __init__(self, bounds: tuple[ArrayLike, ArrayLike], raw_value: ArrayLike | None = None):
        if raw_value is not None:
            lower, upper = jnp.asarray(bounds)
            arr = jnp.asarray(raw_value)
            raw_value = eqx.error_if(  # on the array: a Python float cannot carry the check
                arr,
                jnp.any((arr < lower) | (arr > upper)),
                "Bounded: the value lies outside its bounds",
            )
        self.bounds = bounds
        self.raw_value = raw_value

    @property
    def value(self) -> Array:
        return jnp.asarray(self.raw_value)

    def wrap(self, value: Array) -> Self:
        return eqx.tree_at(lambda m: m.raw_value, self, jnp.asarray(value))


def _raw_from_value(constraint: AbstractConstraint, value: Any) -> Array:
    value = jnp.asarray(value)
    raw = constraint.bijector.inverse(value)
    return eqx.error_if(
        raw,
        jnp.any(jnp.isnan(raw)) | jnp.any(constraint.is_outside(value)),
        "Constraint violated: the value lies outside the variable's constraint",
    )


def _ready(raw: Array) -> Array:
    # Surfaces an eqx.error_if failure at construction, not at first use.
    if not isinstance(raw, Tracer):
        raw.block_until_ready()
    return raw


def _broadcast_bounds(constraint: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
    lower, upper = as_unwrapped(constraint).bounds
    return jnp.broadcast_to(lower, shape), jnp.broadcast_to(upper, shape)


class _ConstrainedVariable(
    AbstractVariable, AbstractConstrainable[Array], AbstractWrappable[Array]
):
    """What `Constrained` and `Random` share: ``value = constraint.bijector.forward(raw_value)``.

    The value, bounds and wrap are defined here once; subclasses declare the two fields.
    """

    constraint: eqx.AbstractVar[Any]
    raw_value: eqx.AbstractVar[Array]

    @property
    def value(self) -> Array:
        return as_unwrapped(self.constraint).bijector.forward(self.raw_value)

    @property
    def bounds(self) -> tuple[Array, Array]:
        return _broadcast_bounds(self.constraint, self.value.shape)

    def wrap(self, value: Array) -> Self:
        raw = as_unwrapped(self.constraint).bijector.inverse(value)
        return eqx.tree_at(lambda m: m.raw_value, self, raw)


class Constrained(_ConstrainedVariable):
    """A variable inside a constraint: ``value = constraint.bijector.forward(raw_value)``.

    Args:
        constraint: the constraint (`RealLine` of the value's shape when None).
        value: the physical value (raw value computed by the inverse bijector).
        raw_value: the raw value instead (exactly one of `value`, `raw_value`).

    Raises:
        ConfigError: neither or both of `value` and `raw_value`.
        equinox.EquinoxRuntimeError: a value outside the constraint.
    """

    constraint: Any = eqx.field(converter=as_opaque)
    raw_value: Array = eqx.field(converter=jnp.asarray)

    def __init__(
        self,
        constraint: AbstractConstraint | None = None,
        value: Any = None,
        *,
        raw_value: Any = None,
    ):
        if (value is None) == (raw_value is None):
            if value is None:
                raise ConfigError("Constrained: Must provide either `value` or `raw_value`")
            raise ConfigError("Constrained: Cannot provide both `value` and `raw_value`")
        if constraint is None:
            constraint = RealLine(shape=jnp.shape(value if raw_value is None else raw_value))
        if raw_value is None:  # exactly one was given: compute the raw value from `value`
            raw_value = _ready(_raw_from_value(as_unwrapped(as_opaque(constraint)), value))
        self.constraint = constraint
        self.raw_value = raw_value

    def constrain(self, constraint: AbstractConstraint) -> Constrained:
        return Constrained(constraint, value=self.value)


def _distribution_mean(distribution: Any) -> Array:
    try:
        return jnp.asarray(distribution.mean())
    except Exception as err:
        raise ConfigError(
            "Random: give `value` or `raw_value`: the distribution has no mean()"
        ) from err


class Random(_ConstrainedVariable, AbstractProbabilistic[Array]):
    """A random variable: a distribution, its constraint, and a raw value.

    Args:
        distribution: a distreqx distribution.
        constraint: the support; inferred from the distribution when None.
        value: the physical value (the distribution's mean when neither is given).
        raw_value: the raw value instead.

    Raises:
        ConfigError: both `value` and `raw_value`, or neither with no `mean()`.
    """

    distribution: Any = eqx.field(converter=as_opaque)
    constraint: Any = eqx.field(converter=as_opaque)
    raw_value: Array = eqx.field(converter=jnp.asarray)

    def __init__(
        self,
        distribution: AbstractDistribution,
        constraint: AbstractConstraint | None = None,
        value: Any = None,
        *,
        raw_value: Any = None,
    ):
        if value is not None and raw_value is not None:
            raise ConfigError("Random: Cannot provide both `value` and `raw_value`")
        dist = as_unwrapped(distribution)
        if value is None and raw_value is None:
            value = _distribution_mean(dist)
        if constraint is None:
            constraint = infer_distribution_constraint(dist)
        if raw_value is None:  # `value` was given or is the mean: compute the raw value
            raw_value = _ready(_raw_from_value(as_unwrapped(as_opaque(constraint)), value))
        self.distribution = distribution
        self.constraint = constraint
        self.raw_value = raw_value

    def constrain(self, constraint: AbstractConstraint) -> Random:
        """A copy under `constraint`; a narrower one truncates the distribution.

        `Normal` and `Uniform` are truncated; any other distribution is kept and a
        `UserWarning` says it is warped by the narrower constraint.
        """
        old_lo, old_hi = as_unwrapped(self.constraint).bounds
        new_lo, new_hi = as_unwrapped(constraint).bounds
        dist = self.distribution
        if bool(jnp.any(new_lo > old_lo) or jnp.any(new_hi < old_hi)):
            try:
                dist = truncate_distribution(as_unwrapped(dist), new_lo, new_hi)
            except ConfigError:
                name = type(as_unwrapped(dist)).__name__
                warnings.warn(
                    f"Random.constrain: {name} cannot be truncated; the narrower constraint "
                    "warps it (prefer a distribution that matches the constraint)",
                    UserWarning,
                    stacklevel=2,
                )
        return Random(dist, constraint, self.value)


def tree_named_params(tree: PyTree) -> dict[str, AbstractVariable | Array]:
    """``{keystr(path): param}`` for every param (variable or inexact array) in `tree`."""
    leaves, _ = jax.tree.flatten_with_path(tree, is_leaf=is_param)
    return {jax.tree_util.keystr(p): leaf for p, leaf in leaves if is_param(leaf)}


def constrain_param(
    variable: AbstractVariable | ArrayLike, *constraints: AbstractConstraint
) -> Any:
    """Put the intersection of `constraints` on a parameter, however it is wrapped.

    Constrainable variables take it directly; `Fixed` and `Tagged` pass it to what they
    hold; `Transformed` pulls it back through its bijector; `Real` and plain arrays
    become `Constrained`.

    Raises:
        ConfigTypeError: any other type.
    """
    constraint = reduce(intersect, constraints)
    if is_constrainable(variable):
        return variable.constrain(constraint)
    if isinstance(variable, Transformed):
        back = TransformedConstraint(constraint, Inverse(as_unwrapped(variable.bijector)))
        return Transformed(variable.bijector, constrain_param(variable.raw_value, back))
    if isinstance(variable, Fixed | Tagged):
        inner = constrain_param(variable.raw_value, constraint)
        return eqx.tree_at(lambda m: m.raw_value, variable, inner)
    if isinstance(variable, Real) or eqx.is_inexact_array(variable):
        return Constrained(constraint, value=jnp.asarray(variable))
    raise ConfigTypeError(
        f"constrain_param: cannot constrain a {type(variable).__name__}; "
        "give a parax variable or an inexact JAX array"
    )
