"""`field`: the dataclass field specifier for `orrery.parax.Module`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, dataclass_transform

import equinox as eqx

__all__ = ["ModuleMeta", "field"]


def field(
    *,
    converter: Callable[[Any], Any] | None = None,
    static: bool = False,
    save: bool = True,
    transparent: bool = False,
    **kwargs: Any,
) -> Any:
    """Declare a field of an `orrery.parax.Module`.

    Args:
        converter: applied to the value at construction (as in `equinox.field`).
        static: keep the value out of the pytree leaves.
        save: write the field in `orrery.parax.save`; unsaved fields get their default
            (or None) when loaded.
        transparent: the field contributes no segment to parameter names.
        **kwargs: forwarded to `dataclasses.field` (e.g. ``default``, ``default_factory``).
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["parax_save"] = save
    metadata["parax_transparent"] = transparent
    if converter is not None:
        kwargs["converter"] = converter
    return eqx.field(static=static, metadata=metadata, **kwargs)


if TYPE_CHECKING:

    @dataclass_transform(field_specifiers=(dataclasses.field, eqx.field, field))
    class ModuleMeta(type(eqx.Module)):
        """Equinox's metaclass as the type checker sees it, with `field` a field specifier.

        Only for the checker (the runtime metaclass stays equinox's own): without it, the
        ``kw_only=True`` base fields of `Module` declared with `field` read as positional
        defaults, and every subclass field without a default as out of order.
        """

else:
    ModuleMeta = type(eqx.Module)
