"""The typing helpers of `Module`'s selection and mapping keywords (private)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias, TypedDict

from .parameter import Parameter

if TYPE_CHECKING:
    from .module import Module

__all__ = [
    "ParamFilter",
    "SubmoduleFilter",
    "_DrawKeywords",
    "_FlatSelection",
    "_MapAllKeywords",
    "_MapKeywords",
    "_Selection",
]

ParamFilter = str | Parameter | Iterable[str | Parameter] | Callable[[str], bool] | None
"""What selects parameters: a name, a `Parameter`, several of these, or a predicate on names."""

SubmoduleFilter: TypeAlias = "Module | str | Iterable[Module | str] | None"
"""What restricts a selection to submodules: module objects or their names."""


class _Selection(TypedDict, total=False):
    """The keywords that select parameters, as `Module.named_params` takes them."""

    include_fixed: bool
    submodules: SubmoduleFilter


class _FlatSelection(_Selection, total=False):
    param_filter: ParamFilter


class _MapKeywords(TypedDict, total=False):
    """The keywords of `Module.with_mapped_params` besides the mapper and the filter."""

    prefixes: bool
    include_fixed: bool
    ignore_unknown: bool


class _MapAllKeywords(_MapKeywords, total=False):
    map_others: Callable[[Parameter], Parameter] | None


class _DrawKeywords(TypedDict, total=False):
    batched: bool
