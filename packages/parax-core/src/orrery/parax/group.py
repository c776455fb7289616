"""`ParameterGroup`: joint structure over a set of named flat parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
from distreqx.bijectors import AbstractBijector, Chain
from distreqx.distributions import AbstractDistribution

from orrery.interface import ConfigError, ShapeError

from ._errors import ConfigTypeError
from ._util import fast_set, static_event_shape
from .metadata import Info, NameList

__all__ = ["ParameterGroup"]


def _names(names: str | Sequence[str]) -> NameList:
    if isinstance(names, str):
        return NameList([names])
    try:
        out = NameList(names)
    except TypeError:
        raise ConfigTypeError(
            f"param_names: expected a sequence of str, got {type(names).__name__}"
        ) from None
    if not all(isinstance(n, str) for n in out):
        raise ConfigTypeError(f"param_names: expected a sequence of str, got {names!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"param_names: duplicate names in {list(out)}")
    return out


def check_group_distribution(names: Sequence[str], dist: AbstractDistribution | None) -> None:
    """Refuse a joint distribution whose draws do not hold one value per name."""
    event = static_event_shape(dist)
    if event is None:
        return
    size = math.prod(event)
    if size != len(names):
        raise ShapeError(
            f"distribution: event shape {event} holds {size} value(s), but "
            f"the group names {len(names)} parameter(s) {list(names)}"
        )


class ParameterGroup(eqx.Module):
    """A set of flat parameter names with an optional joint distribution.

    Attributes:
        param_names: flat parameter names (relative to the module holding the group).
        name: optional identifier of the group.
        distribution: joint distribution over the physical values of the parameters,
            in the order of `param_names` (event shape ``(num_params,)``).
        transform: optional joint bijector (kept for compatibility; not used yet).
        info: arbitrary metadata (static).
    """

    param_names: list[str] = eqx.field(static=True, converter=_names)
    name: str | None = eqx.field(default=None, static=True)
    distribution: AbstractDistribution | None = None
    transform: AbstractBijector | None = None
    info: dict = eqx.field(default_factory=Info, static=True, converter=Info)

    def __check_init__(self):
        d = self.distribution
        if d is not None and not isinstance(d, AbstractDistribution):
            raise ConfigTypeError(f"distribution: expected a distreqx distribution, got {type(d)}")

    @property
    def num_params(self) -> int:
        """Number of parameter names in the group."""
        return len(self.param_names)

    def with_distribution(self, distribution: AbstractDistribution | None) -> ParameterGroup:
        """A copy with a new joint distribution.

        Args:
            distribution: a distreqx distribution with event shape ``(num_params,)``, or None.

        Returns:
            The updated copy.

        Raises:
            ConfigError: not a distreqx distribution (also a `TypeError`).
            ShapeError: its event shape does not hold one value per name.
        """
        if distribution is not None and not isinstance(distribution, AbstractDistribution):
            raise ConfigTypeError(
                f"distribution: expected a distreqx distribution, got {type(distribution).__name__}"
            )
        check_group_distribution(self.param_names, distribution)
        return fast_set(self, distribution=distribution)

    def transformed(self, transform: AbstractBijector) -> ParameterGroup:
        """A copy whose group bijector is ``transform ∘ existing``.

        Args:
            transform: a distreqx bijector.

        Returns:
            The updated copy.

        Raises:
            ConfigError: not a distreqx bijector (also a `TypeError`).
        """
        if not isinstance(transform, AbstractBijector):
            raise ConfigTypeError(
                f"transform: expected a distreqx AbstractBijector, got {type(transform).__name__}"
            )
        new = transform if self.transform is None else Chain([transform, self.transform])
        return fast_set(self, transform=new)

    def with_param_names(self, names: Sequence[str]) -> ParameterGroup:
        """A copy naming other parameters.

        Args:
            names: the flat parameter names.

        Returns:
            The updated copy.
        """
        return fast_set(self, param_names=_names(names))
