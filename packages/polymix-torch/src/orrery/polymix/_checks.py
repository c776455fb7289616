"""Torch-side argument checks that raise `orrery.interface` errors.

They only look at shapes and dtypes, never at values, so they cost nothing on
the forward path (no device synchronisation); the one exception,
`check_domain`, reads the values of a polynomial chaos input once per tensor.
Scalar settings are checked with `orrery.interface`'s `check_positive_float`
and `check_nonnegative_float` (`ConfigError`, as the table in
`orrery.interface.errors` says).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import torch

from orrery.interface import ConfigError, ShapeError, check_positive_int

__all__ = [
    "as_float_tensor",
    "check_domain",
    "check_inputs",
    "check_name",
    "check_params",
    "check_samples",
    "check_tensor",
    "domain_checks_off",
]


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


# Off while a surrogate runs on something that is not a chaos input (the particles
# of a `LangevinGroup`, which live on the whole real line).
_DOMAIN_CHECKS = contextvars.ContextVar("polymix_domain_checks", default=True)


@contextlib.contextmanager
def domain_checks_off() -> Iterator[None]:
    """Within this block `check_domain` does nothing."""
    token = _DOMAIN_CHECKS.set(False)
    try:
        yield
    finally:
        _DOMAIN_CHECKS.reset(token)


# The tensor last found inside the domain, and its version: a training loop that
# passes the same `x` every step pays for the check (one device sync) once.
_LAST_IN_DOMAIN: list[Any] = [None, -1]


_INTERNAL_DIRS = (
    os.path.dirname(torch.__file__),
    os.path.dirname(os.path.abspath(__file__)),
)


def _caller_stacklevel() -> int:
    """`stacklevel` pointing at the first frame outside torch and polymix."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


def domain_tolerance(dtype: torch.dtype) -> float:
    """How far past ``±1`` an input may lie and still count as inside (rounding slack)."""
    return max(1e-6, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0


def check_domain(x: torch.Tensor, name: str = "x") -> None:
    """Warn when inputs of a Legendre expansion lie outside ``[-1, 1]`` or are not finite.

    Values within `domain_tolerance` of ``±1`` count as inside. The warning
    (`RuntimeWarning`) names the argument, how many values are outside, the
    first of them and the largest ``|x|``; the computation goes on (outputs
    outside the domain are extrapolations, NaN inputs give NaN outputs).
    Skipped where values cannot be read (``torch.func`` transforms,
    ``torch.compile``), for a tensor already found inside at its current
    version, and inside `domain_checks_off` (a `LangevinGroup` evaluating its
    surrogate at parameter particles, which are no chaos inputs).
    """
    if not _DOMAIN_CHECKS.get():
        return
    last = _LAST_IN_DOMAIN[0]
    if last is not None and last() is x and _LAST_IN_DOMAIN[1] == x._version:
        return
    if torch.compiler.is_compiling():
        return
    with torch.no_grad():
        mag = x.detach().abs()
        outside = ~(mag <= 1 + domain_tolerance(x.dtype))
        try:
            count = int(outside.sum())
        except RuntimeError:  # a functorch-wrapped tensor has no values to read
            return
        if not count:
            _LAST_IN_DOMAIN[:] = [weakref.ref(x), x._version]
            return
        first = tuple(int(i) for i in outside.nonzero()[0])
        finite = mag[torch.isfinite(mag)]
        nonfinite = mag.numel() - finite.numel()
        largest = f"; largest finite |{name}| = {float(finite.max()):.4g}" if finite.numel() else ""
        extra = f", {nonfinite} of them NaN or inf" if nonfinite else ""
        warnings.warn(
            f"{name}: {count} input value(s) outside [-1, 1], the domain of the Legendre basis"
            f"{extra} (first at index {first}: {float(x[first]):.4g}{largest}); outputs there "
            "are extrapolations the Sobol indices do not describe: rescale the inputs to [-1, 1]",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )
