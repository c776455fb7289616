"""Parameter spaces: physical units, the unit hypercube of the bounds, and its logit.

A posterior learns its density in one of three coordinate systems:

- ``"physical"``: the parameters as simulated;
- ``"cube"``: ``u = (theta - lower) / (upper - lower)``, the unit hypercube;
- ``"unconstrained"``: ``v = logit(u)``, the whole real line.

`ParameterSpace` maps between them exactly and gives the log-Jacobians,
so a density in one space converts to another:
``log p_space(s) = log p_physical(theta) - log|d s / d theta|``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from orrery.interface import ConfigError, ShapeError, ValueDomainError, check_choice

__all__ = [
    "PARAMETER_SPACES",
    "PARAMETER_TRANSFORMS",
    "ParameterSpace",
    "choose_log_dims",
    "cube_to_unconstrained",
    "log_dim_moments",
    "unconstrained_to_cube",
]

PARAMETER_SPACES: tuple[str, ...] = ("physical", "cube", "unconstrained")


def cube_to_unconstrained(u: Float[Array, "... d"]) -> tuple[Array, Array]:
    """``logit(u)`` and ``log|d logit(u) / du|`` summed over the last axis."""
    u = jnp.asarray(u)
    v = jnp.log(u) - jnp.log1p(-u)
    log_det = -(jnp.log(u) + jnp.log1p(-u)).sum(-1)
    return v, log_det


def unconstrained_to_cube(v: Float[Array, "... d"]) -> tuple[Array, Array]:
    """``sigmoid(v)`` and ``log|d sigmoid(v) / dv|`` summed over the last axis."""
    v = jnp.asarray(v)
    u = 1.0 / (1.0 + jnp.exp(-v))
    # log sigmoid(v) + log sigmoid(-v), written with softplus for stability.
    log_det = -(jnp.logaddexp(0.0, -v) + jnp.logaddexp(0.0, v)).sum(-1)
    return u, log_det


class ParameterSpace:
    """The coordinates a posterior works in, with exact maps to and from physical units.

    Args:
        kind: ``"physical"``, ``"cube"`` or ``"unconstrained"``.
        lower: lower bounds ``(d,)``; needed for ``"cube"`` and ``"unconstrained"``.
        upper: upper bounds ``(d,)``, strictly above ``lower``.
        log_dims: ``(d,)`` flags of a ``"physical"`` space: parameters of a positive
            prior, which the posterior's flow models in log space (its densities carry
            the Jacobian, and only positive values are in the support). Empty: none.

    Example:
        >>> space = ParameterSpace("cube", lower=[0.0, -1.0], upper=[2.0, 1.0])
        >>> np.asarray(space.from_physical(np.array([1.0, 0.5])))
        array([0.5 , 0.75], dtype=float32)
    """

    def __init__(self, kind: str, lower: Any = None, upper: Any = None, log_dims: Any = ()) -> None:
        self.kind = check_choice(kind, PARAMETER_SPACES, "parameter_space")
        self.log_dims: tuple[bool, ...] = tuple(bool(v) for v in (log_dims or ()))
        if any(self.log_dims) and self.kind != "physical":
            raise ConfigError(
                f"log_dims: log-space parameters need parameter_space='physical', got {kind!r}"
            )
        if (lower is None) != (upper is None):
            raise ConfigError("bounds: give both lower and upper, or neither")
        if lower is None:
            if kind != "physical":
                raise ConfigError(
                    f"parameter_space={kind!r} needs parameter bounds; give bounds=(d, 2) to "
                    "the dataset or use parameter_space='physical'"
                )
            self.lower = self.upper = None
            return
        lo = np.atleast_1d(np.asarray(lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(upper, dtype=np.float64))
        if lo.ndim != 1 or lo.shape != hi.shape:
            raise ShapeError(
                "bounds: expected lower and upper of equal 1-D shape, "
                f"got {lo.shape} and {hi.shape}"
            )
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueDomainError("bounds: expected finite lower and upper bounds")
        if np.any(hi <= lo):
            bad = int(np.argmax(hi <= lo))
            raise ValueDomainError(
                f"bounds: expected upper > lower, got lower={lo[bad]} upper={hi[bad]} "
                f"at index {bad}"
            )
        self.lower, self.upper = lo, hi

    @property
    def dim(self) -> int | None:
        """Number of parameters when bounds are known."""
        return None if self.lower is None else int(self.lower.shape[0])

    def __repr__(self) -> str:
        return f"ParameterSpace({self.kind!r}, dim={self.dim})"

    def _width(self) -> Array:
        if self.lower is None or self.upper is None:
            raise ConfigError("this parameter space has no bounds; cube coordinates are undefined")
        return jnp.asarray(self.upper - self.lower)

    def physical_to_cube(self, theta: Float[Array | np.ndarray, "... d"]) -> Array:
        """``(theta - lower) / (upper - lower)``."""
        self._need_bounds()
        return (jnp.asarray(theta) - jnp.asarray(self.lower)) / self._width()

    def cube_to_physical(self, u: Float[Array | np.ndarray, "... d"]) -> Array:
        """``lower + u * (upper - lower)``."""
        self._need_bounds()
        return jnp.asarray(self.lower) + jnp.asarray(u) * self._width()

    def from_physical(self, theta: Float[Array | np.ndarray, "... d"]) -> Array:
        """Map physical parameters into this space."""
        return self.from_physical_and_log_det(theta)[0]

    def to_physical(self, s: Float[Array | np.ndarray, "... d"]) -> Array:
        """Map coordinates of this space back to physical units."""
        s = jnp.asarray(s)
        if self.kind == "physical":
            return s
        if self.kind == "unconstrained":
            s = unconstrained_to_cube(s)[0]
        return self.cube_to_physical(s)

    def from_physical_and_log_det(
        self, theta: Float[Array | np.ndarray, "... d"]
    ) -> tuple[Array, Array]:
        """Coordinates in this space and ``log|d s / d theta|`` (summed over the last axis)."""
        theta = jnp.asarray(theta)
        if self.kind == "physical":
            return theta, jnp.zeros(theta.shape[:-1], theta.dtype)
        u = self.physical_to_cube(theta)
        log_det = -jnp.log(self._width()).sum() * jnp.ones(theta.shape[:-1], u.dtype)
        if self.kind == "cube":
            return u, log_det
        v, extra = cube_to_unconstrained(u)
        return v, log_det + extra

    def log_abs_det_jacobian(self, theta: Float[Array | np.ndarray, "... d"]) -> Array:
        """``log|d s / d theta|`` of the map from physical units into this space."""
        return self.from_physical_and_log_det(theta)[1]

    def log_prob_to_physical(self, log_prob: Array, s: Float[Array, "... d"]) -> Array:
        """Convert a log-density over this space at ``s`` into one over physical units."""
        theta = self.to_physical(s)
        return jnp.asarray(log_prob) + self.log_abs_det_jacobian(theta)

    def contains(self, s: Any) -> np.ndarray:
        """Whether each vector of ``s`` lies in the support of this space."""
        s = np.asarray(s)
        if self.kind == "cube":
            return np.all((s >= 0) & (s <= 1), axis=-1)
        ok = np.all(np.isfinite(s), axis=-1)
        if any(self.log_dims):
            ok &= np.all(s[..., np.asarray(self.log_dims)] > 0, axis=-1)
        return ok

    def _need_bounds(self) -> None:
        if self.lower is None:
            raise ConfigError("this parameter space has no bounds; cube coordinates are undefined")

    def to_config(self) -> dict[str, Any]:
        """JSON-safe description (kind and bounds)."""
        out = {
            "kind": self.kind,
            "lower": None if self.lower is None else self.lower.tolist(),
            "upper": None if self.upper is None else self.upper.tolist(),
        }
        if any(self.log_dims):  # absent (none) in configs written before log dims existed
            out["log_dims"] = list(self.log_dims)
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ParameterSpace:
        """Inverse of `to_config`."""
        return cls(
            config["kind"], config.get("lower"), config.get("upper"), config.get("log_dims", ())
        )


#: Values of the posterior's ``parameter_transform``.
PARAMETER_TRANSFORMS: tuple[str, ...] = ("none", "auto", "log")
#: Skewness of a positive parameter above which ``"auto"`` models it in log space
#: (when its logarithm is less skewed): a log-normal prior of log-sd 0.2 has 0.61.
LOG_SKEW = 0.5


def _skew(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    sd = np.sqrt((c**2).mean(0))
    return (c**3).mean(0) / np.where(sd > 0, sd, 1.0) ** 3


def choose_log_dims(theta: Any, mode: str, *, bounded: bool) -> tuple[bool, ...]:
    """Which parameters a physical-space flow models in log space.

    ``"none"``: none. ``"log"``: every parameter (all must be positive). ``"auto"``:
    without a prior box (``bounded=False``: a bounded prior uses its box), each
    parameter whose simulated values are all positive and right-skewed (skewness
    above `LOG_SKEW`) with a less skewed logarithm: a log-normal or other
    half-bounded positive prior.

    Raises:
        ValueDomainError: ``"log"`` with a parameter value <= 0.
    """
    check_choice(mode, PARAMETER_TRANSFORMS, "parameter_transform")
    theta = np.asarray(theta, np.float64)
    d = theta.shape[1]
    if mode == "none":
        return ()
    positive = np.all(theta > 0, axis=0)
    if mode == "log":
        if not positive.all():
            bad = int(np.argmin(positive))
            raise ValueDomainError(
                f"parameter_transform='log': parameter {bad} has values <= 0 "
                f"(smallest {theta[:, bad].min():.3g})"
            )
        return (True,) * d
    if bounded:
        return ()
    skew = _skew(theta)
    log_skew = _skew(np.log(np.where(positive, theta, 1.0)))
    flags = positive & (skew > LOG_SKEW) & (np.abs(log_skew) < np.abs(skew))
    return tuple(bool(f) for f in flags) if flags.any() else ()


def log_dim_moments(
    space: ParameterSpace, theta: Any, shift: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, scale)`` of the flow coordinates with the log dims' from ``log theta``."""
    if not any(space.log_dims):
        return shift, scale
    mask = np.asarray(space.log_dims)
    logs = np.log(np.asarray(theta, np.float64)[:, mask])
    std = logs.std(0)
    shift, scale = np.array(shift, np.float64), np.array(scale, np.float64)
    shift[mask], scale[mask] = logs.mean(0), np.where(std > 0, std, 1.0)
    return shift, scale
