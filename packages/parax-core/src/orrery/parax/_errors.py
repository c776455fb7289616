"""Error classes for bad arguments whose upstream counterpart was a `TypeError`.

They subclass the `orrery.interface` classes, so ``except ConfigError`` catches them, and
`TypeError`, so upstream parax code that catches `TypeError` keeps working.
"""

from __future__ import annotations

from orrery.interface import ConfigError, ConfigTypeError

__all__ = ["ConfigAttributeError", "ConfigKeyError", "ConfigTypeError"]


class ConfigAttributeError(ConfigError, AttributeError):
    """A missing attribute named by an argument (a `ConfigError` that is an `AttributeError`)."""


class ConfigKeyError(ConfigError, KeyError):
    """An unknown name given as a key (a `ConfigError` that is also a `KeyError`)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
