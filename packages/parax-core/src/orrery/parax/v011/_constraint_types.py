"""The constraint classes of parax 0.11 and their intersection.

A constraint gives `bounds` (physical lower and upper), `closed` (whether each bound
belongs to the set; an infinite bound is closed unless asked otherwise), `bijector`
(the real line onto the interior), and a base space (`base_bounds`, `base_bijector`) in
which a bounded optimiser works: the unit box where both bounds are finite.
"""

from typing import Any, TypeGuard

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from orrery.interface import ConfigError, ValueDomainError

from .bijectors import (
    AbstractBijector,
    Chain,
    Elementwise,
    Identity,
    ScalarAffine,
    Shift,
    Sigmoid,
    Softplus,
)
from .bijectors import Leafwise as LeafwiseBijector

__all__ = [
    "AbstractConstraint",
    "AbstractUncorrelatedConstraint",
    "Custom",
    "GreaterThan",
    "Interval",
    "Leafwise",
    "LessThan",
    "Negative",
    "NonNegative",
    "NonPositive",
    "Positive",
    "RealLine",
    "Transformed",
    "base_space",
    "intersect",
    "is_constraint",
]


class AbstractConstraint(eqx.Module):
    """Bounds, their closedness, a bijector onto the interior, and a base space."""

    bounds: AbstractVar[tuple[PyTree, PyTree]]
    closed: AbstractVar[tuple[PyTree, PyTree]]
    bijector: AbstractVar[AbstractBijector]
    base_bounds: AbstractVar[tuple[PyTree, PyTree]]
    base_bijector: AbstractVar[AbstractBijector]

    def clip(self, value: PyTree) -> PyTree:
        """`value` clipped into the bounds."""
        return jax.tree.map(jnp.clip, value, self.bounds[0], self.bounds[1])

    def is_outside(self, value: PyTree) -> PyTree:
        """Elementwise: outside the set (on an open bound counts as outside; NaN too)."""

        def outside(x: Array, lo: Array, hi: Array, lc: Any, uc: Any) -> Array:
            above = jnp.where(lc, x >= lo, x > lo)
            below = jnp.where(uc, x <= hi, x < hi)
            return ~(above & below)

        return jax.tree.map(outside, value, *self.bounds, *self.closed)

    def midpoint(self) -> PyTree:
        """``(lower + upper) / 2`` (infinite or NaN for an unbounded side)."""
        return jax.tree.map(lambda a, b: (a + b) / 2.0, *self.bounds)


def is_constraint(x: object) -> TypeGuard[AbstractConstraint]:
    """Whether `x` is a constraint."""
    return isinstance(x, AbstractConstraint)


def _pair(closed: Any) -> tuple[Any, Any]:
    return tuple(closed) if isinstance(closed, tuple) else (closed, closed)


class AbstractUncorrelatedConstraint(AbstractConstraint):
    """A constraint acting on each element alone; by default its base space is itself."""

    @property
    def base_bounds(self) -> tuple[PyTree, PyTree]:
        return self.bounds

    @property
    def base_bijector(self) -> AbstractBijector:
        return Identity()


class RealLine(AbstractUncorrelatedConstraint):
    """Every real number, ±inf included (`Identity` bijector)."""

    shape: Any = eqx.field(static=True)

    def __init__(self, shape: Any = ()):
        self.shape = shape

    @property
    def bounds(self) -> tuple[Array, Array]:
        return jnp.full(self.shape, -jnp.inf), jnp.full(self.shape, jnp.inf)

    @property
    def closed(self) -> tuple[bool, bool]:
        return True, True

    @property
    def bijector(self) -> AbstractBijector:
        return Identity()


def _flip() -> AbstractBijector:
    return ScalarAffine(shift=jnp.array(0.0), scale=jnp.array(-1.0))


class GreaterThan(AbstractUncorrelatedConstraint):
    """``x >= lower`` (``x > lower`` with ``closed=(False, ...)``); bijector `lower + softplus`."""

    lower: Array
    closed: tuple[bool, bool] = eqx.field(static=True)

    def __init__(self, lower: Any, closed: bool | tuple[bool, bool] = True):
        self.lower = jnp.asarray(lower, dtype=float)
        self.closed = _pair(closed)

    @property
    def bounds(self) -> tuple[Array, Array]:
        return self.lower, jnp.full_like(self.lower, jnp.inf)

    @property
    def bijector(self) -> AbstractBijector:
        return Chain([Shift(self.lower), Softplus()])


class LessThan(AbstractUncorrelatedConstraint):
    """``x <= upper``; bijector `upper - softplus(-x)`."""

    upper: Array
    closed: tuple[bool, bool] = eqx.field(static=True)

    def __init__(self, upper: Any, closed: bool | tuple[bool, bool] = True):
        self.upper = jnp.asarray(upper, dtype=float)
        self.closed = _pair(closed)

    @property
    def bounds(self) -> tuple[Array, Array]:
        return jnp.full_like(self.upper, -jnp.inf), self.upper

    @property
    def bijector(self) -> AbstractBijector:
        return Chain([Shift(self.upper), _flip(), Softplus(), _flip()])


def base_space(lower: Array, upper: Array) -> tuple[Array, Array, AbstractBijector]:
    """``(base_lower, base_upper, base_bijector)`` for one array of bounds.

    Elementwise: the unit box mapped affinely onto ``[lower, upper]`` where both are
    finite; the physical space itself (identity) elsewhere.
    """
    finite = jnp.isfinite(lower) & jnp.isfinite(upper)
    bijector = Chain(
        [
            Shift(jnp.where(finite, lower, 0.0)),
            ScalarAffine(shift=jnp.array(0.0), scale=jnp.where(finite, upper - lower, 1.0)),
        ]
    )
    return jnp.where(finite, 0.0, lower), jnp.where(finite, 1.0, upper), bijector


class Interval(AbstractUncorrelatedConstraint):
    """``lower <= x <= upper`` per element; an infinite end acts as a half-line or real line.

    Where both ends are finite the bijector is the sigmoid onto the unit box followed by
    the affine `base_bijector`, so both optimiser spaces agree through the interior.
    """

    lower: Array
    upper: Array
    closed: tuple[bool, bool] = eqx.field(static=True)

    def __init__(self, lower: Any, upper: Any, closed: bool | tuple[bool, bool] = True):
        self.lower = jnp.asarray(lower, dtype=float)
        self.upper = jnp.asarray(upper, dtype=float)
        self.closed = _pair(closed)

    @property
    def bounds(self) -> tuple[Array, Array]:
        return self.lower, self.upper

    @property
    def base_bounds(self) -> tuple[Array, Array]:
        lo, hi, _ = base_space(self.lower, self.upper)
        return lo, hi

    @property
    def base_bijector(self) -> AbstractBijector:
        return base_space(self.lower, self.upper)[2]

    @property
    def bijector(self) -> AbstractBijector:
        lf, uf = jnp.isfinite(self.lower), jnp.isfinite(self.upper)
        lower = jnp.where(lf, self.lower, 0.0)  # stand-ins: no branch sees an infinity
        upper = jnp.where(uf, self.upper, 0.0)
        return Elementwise(
            masks=(~lf & ~uf, lf & uf, lf & ~uf, ~lf & uf),
            bijectors=(
                Identity(),
                Chain([self.base_bijector, Sigmoid()]),
                GreaterThan(lower).bijector,
                LessThan(upper).bijector,
            ),
            safe_values=(jnp.array(0.0), jnp.array(0.5), lower + 1.0, upper - 1.0),
        )


class Positive(GreaterThan):
    """``x > 0`` (0 itself excluded)."""

    def __init__(self, shape: Any = (), dtype: Any = None):
        super().__init__(jnp.zeros(shape, dtype=dtype), closed=(False, True))


class NonNegative(GreaterThan):
    """``x >= 0``."""

    def __init__(self, shape: Any = (), dtype: Any = None):
        super().__init__(jnp.zeros(shape, dtype=dtype), closed=True)


class Negative(LessThan):
    """``x < 0``."""

    def __init__(self, shape: Any = (), dtype: Any = None):
        super().__init__(jnp.zeros(shape, dtype=dtype), closed=(True, False))


class NonPositive(LessThan):
    """``x <= 0``."""

    def __init__(self, shape: Any = (), dtype: Any = None):
        super().__init__(jnp.zeros(shape, dtype=dtype), closed=True)


def _mixed(constraint: AbstractConstraint, bijector: AbstractBijector, like: PyTree) -> PyTree:
    """Which output elements of `bijector` depend on other input elements too.

    Read from the Jacobian at the image of raw zero; every element is mixed when the
    input and output sizes differ.
    """
    x = constraint.bijector.forward(jax.tree.map(jnp.zeros_like, constraint.bounds[0]))
    if jax.tree.structure(x) == jax.tree.structure(like):
        x = jax.tree.map(
            lambda a, b: jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, b.shape)), x, like
        )
    flat_x, unravel = ravel_pytree(x)
    flat_like, unravel_like = ravel_pytree(like)
    if flat_x.size != flat_like.size:
        return jax.tree.map(lambda v: jnp.ones(jnp.shape(v), bool), like)
    jac = jax.jacfwd(lambda f: ravel_pytree(bijector.forward(unravel(f)))[0])(flat_x)
    off = jnp.where(jnp.eye(flat_x.size, dtype=bool), 0.0, jac)
    mixed = jnp.any(off != 0, axis=1)  # a NaN entry counts as mixing
    return jax.tree.map(lambda m: m > 0, unravel_like(mixed.astype(flat_like.dtype)))


class Transformed(AbstractConstraint):
    """A constraint followed by a bijector: bounds are the old bounds pushed through it.

    An element the bijector mixes with others (or whose pushed bound is NaN) gets ±inf
    bounds, closed only where the base set is closed at both ends; a decreasing bijector
    swaps the bounds and their closedness.
    """

    base_constraint: AbstractConstraint
    transform_bijector: AbstractBijector
    bijector: AbstractBijector
    bounds: tuple[PyTree, PyTree]
    closed: tuple[PyTree, PyTree]

    def __init__(self, constraint: AbstractConstraint, bijector: AbstractBijector):
        self.base_constraint = constraint
        self.transform_bijector = bijector
        self.bijector = Chain([bijector, constraint.bijector])
        lo, hi = (bijector.forward(b) for b in constraint.bounds)
        mixed = _mixed(constraint, bijector, lo)
        unknown = jax.tree.map(lambda m, a, b: m | jnp.isnan(a) | jnp.isnan(b), mixed, lo, hi)
        self.bounds = (
            jax.tree.map(
                lambda n, a, b: jnp.where(n, -jnp.inf, jnp.minimum(a, b)), unknown, lo, hi
            ),
            jax.tree.map(lambda n, a, b: jnp.where(n, jnp.inf, jnp.maximum(a, b)), unknown, lo, hi),
        )
        lc, uc = constraint.closed
        swapped = jax.tree.map(jnp.greater, lo, hi)
        both = jax.tree.map(jnp.logical_and, lc, uc)
        pick = lambda n, s, b, x, y: jnp.where(n, b, jnp.where(s, y, x))
        self.closed = (
            jax.tree.map(pick, unknown, swapped, both, lc, uc),
            jax.tree.map(pick, unknown, swapped, both, uc, lc),
        )

    @property
    def base_bounds(self) -> tuple[PyTree, PyTree]:
        return self.base_constraint.base_bounds

    @property
    def base_bijector(self) -> AbstractBijector:
        return Chain([self.transform_bijector, self.base_constraint.base_bijector])


class Leafwise(AbstractConstraint):
    """A pytree of constraints over a pytree of values (e.g. a whole model).

    Raises:
        ConfigError: the pytree holds no constraint.
    """

    tree: PyTree[AbstractConstraint]

    def __init__(self, tree: PyTree[AbstractConstraint]):
        if not jax.tree.leaves(tree, is_leaf=is_constraint):
            raise ConfigError("Leafwise: The pytree of `tree` cannot be empty.")
        self.tree = tree

    def _side(self, attr: str, index: int) -> PyTree:
        return jax.tree.map(lambda c: getattr(c, attr)[index], self.tree, is_leaf=is_constraint)

    @property
    def bounds(self) -> tuple[PyTree, PyTree]:
        return self._side("bounds", 0), self._side("bounds", 1)

    @property
    def closed(self) -> tuple[PyTree, PyTree]:
        return self._side("closed", 0), self._side("closed", 1)

    @property
    def base_bounds(self) -> tuple[PyTree, PyTree]:
        return self._side("base_bounds", 0), self._side("base_bounds", 1)

    @property
    def bijector(self) -> AbstractBijector:
        return LeafwiseBijector(
            jax.tree.map(lambda c: c.bijector, self.tree, is_leaf=is_constraint)
        )

    @property
    def base_bijector(self) -> AbstractBijector:
        return LeafwiseBijector(
            jax.tree.map(lambda c: c.base_bijector, self.tree, is_leaf=is_constraint)
        )


class Custom(AbstractConstraint):
    """A constraint from a bijector and bounds you give (the escape hatch).

    `closed` is one bool, or a ``(lower, upper)`` pair of bools or pytrees of bools;
    `base_bounds` defaults to `bounds` and `base_bijector` to `Identity`.
    """

    bijector: AbstractBijector
    bounds: tuple[PyTree, PyTree]
    closed: tuple[PyTree, PyTree]
    base_bounds: tuple[PyTree, PyTree]
    base_bijector: AbstractBijector

    def __init__(
        self,
        bijector: AbstractBijector,
        bounds: tuple[PyTree, PyTree] = (jnp.array(-jnp.inf), jnp.array(jnp.inf)),
        closed: Any = True,
        base_bounds: tuple[PyTree, PyTree] | None = None,
        base_bijector: AbstractBijector | None = None,
    ):
        self.bijector = bijector
        self.bounds = tuple(jax.tree.map(jnp.asarray, b) for b in bounds)
        self.closed = tuple(
            jax.tree.map(lambda _, s=side: s, bound) if isinstance(side, bool) else side
            for side, bound in zip(_pair(closed), self.bounds, strict=True)
        )
        self.base_bounds = (
            self.bounds
            if base_bounds is None
            else tuple(jax.tree.map(jnp.asarray, b) for b in base_bounds)
        )
        self.base_bijector = Identity() if base_bijector is None else base_bijector


def _bound_closed(a: Array, b: Array, ac: Any, bc: Any, a_tighter: Array) -> bool:
    both = jnp.logical_and(ac, bc)
    closed = jnp.where(a_tighter, ac, jnp.where(a == b, both, bc))
    return bool(jnp.all(closed))  # one flag per side: open wins where elements disagree


def intersect(a: AbstractConstraint, b: AbstractConstraint) -> AbstractConstraint:
    """The intersection of two constraints, as the most specific class that fits.

    Each bound is the tighter one, keeping its closedness; on a shared bound open wins.
    A named class (`RealLine`, `Positive`, ...) is returned only where its closedness
    matches, else `GreaterThan` / `LessThan` / `Interval`.

    Raises:
        ValueDomainError: the intersection is empty.
    """
    (al, au), (bl, bu) = a.bounds, b.bounds
    (alc, auc), (blc, buc) = a.closed, b.closed
    lower, upper = jnp.maximum(al, bl), jnp.minimum(au, bu)
    closed = (
        _bound_closed(al, bl, alc, blc, al > bl),
        _bound_closed(au, bu, auc, buc, au < bu),
    )
    if bool(jnp.any(lower >= upper)):
        raise ValueDomainError(f"intersect: the intersection of {a} and {b} is empty")
    neg_inf, pos_inf = bool(jnp.all(jnp.isneginf(lower))), bool(jnp.all(jnp.isposinf(upper)))
    zero_lo, zero_hi = bool(jnp.all(lower == 0.0)), bool(jnp.all(upper == 0.0))
    named = {
        (True, False, False, True, (True, True)): RealLine,
        (False, True, False, True, (True, True)): NonNegative,
        (False, True, False, True, (False, True)): Positive,
        (True, False, True, False, (True, True)): NonPositive,
        (True, False, True, False, (True, False)): Negative,
    }
    cls = named.get((neg_inf, zero_lo, zero_hi, pos_inf, closed))
    if cls is not None:
        return cls()
    if pos_inf and not neg_inf:
        return GreaterThan(lower, closed=closed)
    if neg_inf and not pos_inf:
        return LessThan(upper, closed=closed)
    return Interval(lower, upper, closed=closed)
