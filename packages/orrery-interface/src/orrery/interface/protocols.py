"""Structural types shared by every orrery package.

They are `typing.runtime_checkable` protocols: a class conforms by having
the methods, no inheritance needed, and ``isinstance(obj, Density)`` checks
that the methods exist (not their signatures).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ConditionalDensity",
    "Density",
    "Fittable",
    "Persistable",
    "Sampler",
    "Simulator",
    "Surrogate",
]


@runtime_checkable
class Sampler(Protocol):
    """Something that draws samples."""

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        """Draw samples."""
        ...


@runtime_checkable
class Density(Protocol):
    """A normalised (log) density over some space."""

    def log_prob(self, x: Any) -> Any:
        """Log density at ``x``."""
        ...


@runtime_checkable
class ConditionalDensity(Protocol):
    """A density over ``theta`` given a condition, e.g. a posterior ``p(θ | x)``."""

    def sample(self, condition: Any, n: int, seed: Any = None) -> Any:
        """Draw ``n`` samples given ``condition``."""
        ...

    def log_prob(self, condition: Any, theta: Any) -> Any:
        """Log density of ``theta`` given ``condition``."""
        ...


@runtime_checkable
class Surrogate(Protocol):
    """A parametric model ``f(x; params)`` evaluated for a batch of parameters."""

    def __call__(self, x: Any, params: Any) -> Any:
        """Evaluate the surrogate at inputs ``x`` for parameters ``params``."""
        ...


@runtime_checkable
class Simulator(Protocol):
    """A forward model mapping parameters to (possibly noisy) observations."""

    def __call__(self, theta: Any) -> Any:
        """Simulate observations for ``theta``."""
        ...


@runtime_checkable
class Fittable(Protocol):
    """Something that can be fitted to data, returning the fitted object."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """Fit to data and return the fitted model (or training artifacts)."""
        ...


@runtime_checkable
class Persistable(Protocol):
    """Something that saves itself to a path and loads back from one."""

    def save(self, path: Any) -> Any:
        """Write to ``path``."""
        ...

    @classmethod
    def load(cls, path: Any) -> Any:
        """Read an object written by `save`."""
        ...
