"""Field converters of `orrery.parax.Module`: fields annotated `Parameter` wrap their value."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

import equinox as eqx

from .parameter import Parameter

__all__ = ["inject_converters", "to_parameter"]


def to_parameter(x: Any) -> Any:
    """Converter used for fields annotated `Parameter`: wrap anything else in one."""
    if x is None or isinstance(x, Parameter):
        return x
    return Parameter(x)


def _is_param_annotation(ann: Any) -> bool:
    if ann is Parameter:
        return True
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        # `Parameter | None` / `Optional[Parameter]`, as their string forms below
        return set(typing.get_args(ann)) == {Parameter, type(None)}
    if isinstance(ann, str):
        a = ann.replace(" ", "")
        return a.split(".")[-1] in ("Parameter", "Parameter|None", "Optional[Parameter]")
    return False


def inject_converters(cls: type) -> None:
    for fname, ann in inspect.get_annotations(cls).items():
        if not _is_param_annotation(ann):
            continue
        current = cls.__dict__.get(fname, dataclasses.MISSING)
        if isinstance(current, dataclasses.Field):
            if "converter" not in current.metadata:
                md = dict(current.metadata)
                md["converter"] = to_parameter
                current.metadata = md  # type: ignore[misc]
        elif current is dataclasses.MISSING:
            setattr(cls, fname, eqx.field(converter=to_parameter))
        else:
            setattr(cls, fname, eqx.field(default=to_parameter(current), converter=to_parameter))
