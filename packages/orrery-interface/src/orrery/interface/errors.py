"""The error classes every orrery package raises for bad input and bad state.

Each class also derives from the builtin exception a caller would naturally
catch, so ``except ValueError`` keeps working around orrery code while
``except OrreryError`` catches everything orrery raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ConfigTypeError",
    "MissingDependencyError",
    "NotFittedError",
    "OrreryError",
    "ShapeError",
    "ValueDomainError",
]


class OrreryError(Exception):
    """Base class of every error raised deliberately by an orrery package."""


class ShapeError(OrreryError, ValueError):
    """An array argument has the wrong number of dimensions or the wrong sizes."""


class ValueDomainError(OrreryError, ValueError):
    """Values lie outside their domain: NaN or inf, negative where not allowed, …"""


class NotFittedError(OrreryError, RuntimeError):
    """A model was used in a way that needs it to be fitted first."""


class ArtifactError(OrreryError, ValueError):
    """A saved artifact is missing, corrupt, of another kind or another schema."""


class ConfigError(OrreryError, ValueError):
    """An option, or a combination of options, is not valid."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type: a `ConfigError` that is also a `TypeError`.

    Where an upstream API raised `TypeError`, orrery raises this, so upstream
    ``except TypeError`` clauses keep working.
    """


class MissingDependencyError(OrreryError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""
