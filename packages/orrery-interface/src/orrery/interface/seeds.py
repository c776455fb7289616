"""One way to say "random seed" across numpy, JAX and torch code.

Public functions in orrery accept ``seed: int | numpy.random.Generator | None``.
These helpers turn that into what each framework needs: a NumPy generator, or a
plain integer for ``jax.random.key`` and ``torch.Generator.manual_seed``.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

from .errors import ConfigError

__all__ = ["SeedLike", "as_int_seed", "as_numpy_rng"]

SeedLike: TypeAlias = int | np.integer | np.random.Generator | None

_INT_SEED_BOUND = 2**31 - 1


def as_numpy_rng(seed: SeedLike) -> np.random.Generator:
    """Return a `numpy.random.Generator` for ``seed``.

    A generator is returned as is (so the caller's stream advances); an integer
    seeds a new one; ``None`` draws fresh entropy from the operating system.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(_checked_int(seed))


def as_int_seed(seed: SeedLike) -> int:
    """Return a non-negative integer seed (``< 2**31``) for ``seed``.

    An integer is returned unchanged; it must lie in ``[0, 2**31 - 1]``, the
    range every framework takes without folding it (JAX without x64 keeps only
    the low 32 bits of a larger seed, so ``2**32`` and ``2**40`` would both
    give seed 0's stream). A generator yields one draw (and advances); ``None``
    draws fresh OS entropy.

    Raises:
        ConfigError: when ``seed`` is not an int, a generator or None, or is an
            int outside ``[0, 2**31 - 1]`` (the message names the range).

    Example:
        >>> as_int_seed(7)
        7
        >>> as_int_seed(2**40)
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ConfigError: seed: expected an integer in [0, 2**31 - 1] ...
    """
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, _INT_SEED_BOUND))
    if seed is None:
        return int(np.random.default_rng().integers(0, _INT_SEED_BOUND))
    value = _checked_int(seed)
    if value > _INT_SEED_BOUND:
        raise ConfigError(
            f"seed: expected an integer in [0, 2**31 - 1] = [0, {_INT_SEED_BOUND}], got {value}; "
            "pass a smaller int, or a numpy.random.Generator seeded with it"
        )
    return value


def _checked_int(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(
            f"seed: expected an int, a numpy.random.Generator or None, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed}")
    return int(seed)
