"""Error classes of this package that the shared interface does not provide."""

from __future__ import annotations

from orrery.interface import ConfigError

__all__ = ["ConfigTypeError"]


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type: a `ConfigError` that is also a `TypeError`.

    Upstream pollux raises `TypeError` in these places, so `except TypeError`
    clauses written for it keep working.
    """
