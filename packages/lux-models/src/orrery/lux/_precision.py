"""What a loader says when saved float64 arrays must become float32."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import jax


def warn_if_narrowed(names: Iterable[str], where: str, *, stacklevel: int = 3) -> None:
    """Warn when arrays saved in float64 will load as float32 because x64 is off.

    Args:
        names: the names of the arrays that were saved in float64.
        where: what is being loaded (the artifact path), for the message.
        stacklevel: passed to `warnings.warn`, counted from the caller.
    """
    wide = sorted(names)
    # jax's Config sets its flags as attributes at import time, which pyright cannot see
    # (equinox reads this flag the same way)
    x64 = jax.config.jax_enable_x64  # pyright: ignore[reportAttributeAccessIssue]
    if wide and not x64:
        warnings.warn(
            f"{where}: {', '.join(wide)} were saved in float64, but jax_enable_x64 is off, so "
            "they load as float32; enable x64 before loading to keep float64",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
