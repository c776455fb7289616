"""Parameter-name checks for the user-facing entry points (`fixed_pars`, `predict_outputs`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from orrery.interface import ConfigError, OrreryError

__all__ = ["check_known", "closest_hint", "transform_names"]


def closest_hint(name: str, valid: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest valid name, or `""` when none is close."""
    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_known(names: Iterable[str], valid: Iterable[str], what: str) -> None:
    """Raise `ConfigError` for the first of `names` that is not in `valid`.

    Args:
        names: the names given.
        valid: the names that exist.
        what: the argument, for the message (e.g. ``"fixed_pars"``).
    """
    valid = tuple(valid)
    for name in names:
        if name not in valid:
            raise ConfigError(
                f"{what}: unknown parameter name {name!r}{closest_hint(name, valid)}; "
                f"valid names: {list(valid)}"
            )


def transform_names(transform: Any, latent_size: int, data_size: int | None) -> tuple[str, ...]:
    """Every flat parameter name of `transform` (networks name theirs from the input size)."""
    names = list(transform.param_names())
    try:
        expanded = transform.get_expanded_priors(latent_size, data_size or 1)
    except OrreryError:
        expanded = {}
    names += [n for n in expanded if n not in names]
    return tuple(names)
