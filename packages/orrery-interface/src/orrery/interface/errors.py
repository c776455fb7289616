"""The error classes every orrery package raises for bad input and bad state.

Each class also derives from the builtin exception a caller would naturally
catch, so ``except ValueError`` keeps working around orrery code while
``except OrreryError`` catches everything orrery raises on purpose.

One class per kind of failure, in every package; the message always starts
with the argument (or the file) it is about. The helpers of
`orrery.interface.validation` raise the class of their row:

=========================================  ==========================  ==========================
What is wrong                              Class                       Checked by
=========================================  ==========================  ==========================
An array has the wrong number of axes or   `ShapeError`                `check_shape`, `check_ndim`
wrong sizes (also: rows of x and y
differ, an empty array where one row is
needed)
Data values outside their domain: NaN or   `ValueDomainError`          `check_finite`,
inf, negative, or outside a support, in                                `check_nonnegative`
arrays given as data (x, y, observations,
parameters to evaluate, truths, draws)
A setting of the wrong kind or outside     `ConfigError`               `check_positive_int`,
its range, NaN included (a learning rate                               `check_float`,
<= 0, a fraction outside (0, 1], a seed                                `check_positive_float`,
outside [0, 2**31 - 1], a negative                                     `check_nonnegative_float`,
weight), an unknown choice or name, or an                              `check_fraction`,
impossible combination of settings                                     `check_choice`
... where the upstream API raised          `ConfigTypeError` (a
`TypeError` for it                         `ConfigError` and a
                                           `TypeError`)
A saved artifact or store is missing,      `ArtifactError`             `load_artifact`,
corrupt, truncated, too large, nested too                              `read_json`,
deeply, of another kind or schema                                      `Artifact.array`,
                                                                       `Artifact.config_value`
A model is used before it is fitted        `NotFittedError`
An optional dependency is not installed    `MissingDependencyError`    `require`
=========================================  ==========================  ==========================

The line between the two value rows: a *setting* (a scalar option or
hyperparameter that configures the method) is a `ConfigError`; *data* (the
arrays the method works on) is a `ValueDomainError`. A computation that keeps
non-finite values on purpose (a summary of draws that hold NaN, a forward pass
kept free of checks) says so in its docstring and warns (`RuntimeWarning`)
where it can afford the check, naming the argument and how many values.
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
