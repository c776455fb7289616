"""`ParameterMetadata`: the descriptive half of a `Parameter`."""

from __future__ import annotations

from typing import Any

import equinox as eqx
from distreqx.bijectors import AbstractBijector
from distreqx.distributions import AbstractDistribution
from jaxtyping import Array

from ._errors import ConfigKeyError, ConfigTypeError
from ._util import fast_getattribute

__all__ = ["ParameterMetadata"]


class Info(dict):
    """A dict that can live in a static field (hashable by its keys, equal by content)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(map(str, self.keys()))))


class NameList(list):
    """A list of names that can live in a static field (hashable by content)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))


def as_name(name: object) -> str | tuple[str, ...] | None:
    """Store names hashably: a str, a tuple of str (for vector parameters) or None."""
    if name is None or isinstance(name, str):
        return name
    if isinstance(name, (list, tuple)):
        if not all(isinstance(n, str) for n in name):
            raise ConfigTypeError(f"name: expected a str or a list of str, got {name!r}")
        return tuple(name)
    raise ConfigTypeError(f"name: expected a str or a list of str, got {type(name).__name__}")


class ParameterMetadata(eqx.Module):
    """Everything about a parameter apart from its latent value.

    Attributes:
        name: a str, a list of str (one per element of a vector parameter) or None.
        distribution: distreqx distribution of the *physical*, unscaled value, or None.
        transform: distreqx bijector mapping latent -> physical space, or None.
        bounds: physical bounds, array of shape ``(*shape, 2)`` (last axis low, high), or None.
        scale: multiplier applied to the physical value when used as an array.
        info: arbitrary user metadata (static).
    """

    name: str | tuple[str, ...] | None = eqx.field(default=None, static=True, converter=as_name)
    distribution: AbstractDistribution | None = None
    transform: AbstractBijector | None = None
    bounds: Array | None = None
    scale: float = eqx.field(default=1.0, static=True, converter=float)
    info: dict = eqx.field(default_factory=Info, static=True, converter=Info)

    __getattribute__ = fast_getattribute

    def __getitem__(self, key: str) -> Any:
        """``meta[key]`` is ``meta.info[key]`` (user metadata)."""
        try:
            return self.info[key]
        except KeyError:
            raise ConfigKeyError(
                f"key: {key!r} is not in the parameter's info (keys: {sorted(self.info)})"
            ) from None

    def __contains__(self, key: object) -> bool:
        """``key in meta`` tests the user metadata in `info`."""
        return key in self.info
