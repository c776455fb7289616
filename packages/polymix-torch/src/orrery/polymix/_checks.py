"""Torch-side argument checks that raise `orrery.interface` errors.

They only look at shapes and dtypes, never at values, so they cost nothing on
the forward path (no device synchronisation).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from orrery.interface import ConfigError, ShapeError, check_positive_int

__all__ = [
    "as_float_tensor",
    "check_inputs",
    "check_name",
    "check_params",
    "check_positive_float",
    "check_samples",
    "check_tensor",
]


def check_positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (or ``>= 0`` with ``allow_zero``), as ``float``."""
    ok_type = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok_type or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}: expected a finite number {bound}, got {value!r}")
    return float(value)


def check_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` must already be a ``torch.Tensor`` (no silent conversion)."""
    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def check_name(name: Any, what: str = "name") -> str:
    """A group name: a non-empty string that can be a `Draws` variable name."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}: expected a non-empty str, got {name!r}")
    if name.endswith("]"):
        raise ConfigError(f"{what}: {name!r} must not end in ']' (reserved for element names)")
    return name


def check_samples(num_samples: Any, name: str = "num_samples") -> int:
    """``num_samples`` must be an int >= 1."""
    return check_positive_int(num_samples, name, minimum=1)


def as_float_tensor(x: Any, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``x`` as a floating tensor; non-tensors take ``like``'s dtype and device."""
    if not isinstance(x, torch.Tensor):
        kwargs = {} if like is None else {"dtype": like.dtype, "device": like.device}
        try:
            x = torch.as_tensor(x, **kwargs)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"{name}: expected a tensor or array-like, got {type(x).__name__}"
            ) from err
    if not torch.is_floating_point(x):
        if like is not None:
            return x.to(like.dtype)
        return x.to(torch.get_default_dtype())
    return x


def check_inputs(x: torch.Tensor, num_inputs: int, name: str = "x") -> torch.Tensor:
    """``x`` must be ``(N, num_inputs)``."""
    if x.ndim != 2 or x.shape[1] != num_inputs:
        raise ShapeError(
            f"{name}: expected shape (N, {num_inputs}) (one row per point, {num_inputs} input "
            f"column(s)), got {tuple(x.shape)}"
        )
    return x


def check_params(params: torch.Tensor, num_params: int, name: str = "params") -> torch.Tensor:
    """``params`` must be ``(S, num_params)``."""
    if params.ndim != 2 or params.shape[1] != num_params:
        raise ShapeError(
            f"{name}: expected shape (S, {num_params}) (one row per parameter sample), got "
            f"{tuple(params.shape)}"
        )
    return params


def check_same_dtype(x: torch.Tensor, params: torch.Tensor) -> None:
    """Mixed precision between inputs and parameters is always a mistake here."""
    if x.dtype != params.dtype:
        raise ConfigError(
            f"x has dtype {x.dtype} but the parameters have dtype {params.dtype}; convert one "
            f"of them (e.g. model.to({x.dtype}) or x.to({params.dtype}))"
        )
