"""Threefry keys derived on the host, so that a fit's first keys compile no program.

``jax.random.split(jax.random.key(seed), n)`` run eagerly compiles four small XLA
programs (the seed's staging, ``threefry_seed``, the split, the unstacking); in a
fresh process that is a few tenths of a second before any training (issue 37).
`seed_key` and `split_seed` compute the same key data with NumPy (Threefry-2x32, 20 rounds, as
in Salmon et al. 2011 and JAX's default ``threefry2x32`` implementation with
``jax_threefry_partitionable``) and wraps it as typed keys, which costs no
program. Where JAX is configured otherwise (another PRNG implementation, the
non-partitionable split) or the seed is outside ``[0, 2**31)``, JAX computes the
keys itself: the values are the same either way.
"""

from __future__ import annotations

import math

import jax
import numpy as np

__all__ = [
    "epoch_draws",
    "hash_counters",
    "permutation",
    "seed_key",
    "split_keys",
    "split_seed",
    "step_keys",
    "threefry2x32",
]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_MASK32 = np.uint64(0xFFFFFFFF)


def _rotl(v: np.ndarray, r: int) -> np.ndarray:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(
    k1: np.ndarray, k2: np.ndarray, x1: np.ndarray, x2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 (20 rounds) of the counter words ``(x1, x2)`` under the key words ``(k1, k2)``.

    All four are ``uint32`` arrays (or scalars) that broadcast together; the two output
    words have the broadcast shape. Wrap-around is the point: call under
    ``np.errstate(over="ignore")`` when the inputs are scalars.
    """
    schedule = (k1, k2, k1 ^ k2 ^ _PARITY)
    a = x1 + schedule[0]
    b = x2 + schedule[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            a = a + b
            b = _rotl(b, r) ^ a
        a = a + schedule[(group + 1) % 3]
        b = b + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return a, b


def hash_counters(keys: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Threefry of every raw key (data ``(*kshape, 2)``) over a counter block of ``shape``.

    The counters are a C-order ``uint64`` iota of ``shape`` split into (high, low)
    words: ``jax_threefry_partitionable``'s layout for splits and random bits. The two
    output words have the shape ``(*kshape, *shape)``.
    """
    counts = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    hi = (counts >> np.uint64(32)).astype(np.uint32)
    lo = (counts & _MASK32).astype(np.uint32)
    lead = keys.shape[:-1] + (1,) * len(shape)
    with np.errstate(over="ignore"):
        return threefry2x32(keys[..., 0].reshape(lead), keys[..., 1].reshape(lead), hi, lo)


def split_keys(keys: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``jax.random.split``'s key data for raw keys ``(*kshape, 2)``: ``(*kshape, *shape, 2)``."""
    return np.stack(hash_counters(keys, tuple(shape)), axis=-1)


def _threefry_partitionable() -> bool:
    return (
        str(jax.config.jax_default_prng_impl) == "threefry2x32"  # pyright: ignore[reportAttributeAccessIssue]
        and bool(jax.config.jax_threefry_partitionable)  # pyright: ignore[reportAttributeAccessIssue]
    )


def _host_split_applies(seed: int) -> bool:
    return 0 <= seed < 2**31 and _threefry_partitionable()


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``, without compiling (see `split_seed`)."""
    if not _host_split_applies(int(seed)):
        return jax.random.key(seed)
    return jax.random.wrap_key_data(jax.device_put(np.array([0, seed], np.uint32)))


def split_seed(seed: int, num: int) -> tuple[jax.Array, ...]:
    """``tuple(jax.random.split(jax.random.key(seed), num))``, without compiling.

    Args:
        seed: a non-negative integer seed (others go through JAX, same values).
        num: how many keys.

    Returns:
        ``num`` typed keys, bit-identical to JAX's split of ``seed``'s key.
    """
    if not _host_split_applies(int(seed)):
        return tuple(jax.random.split(jax.random.key(seed), num))
    root = np.array([0, seed], np.uint32)  # threefry_seed of a 32-bit seed
    data = split_keys(root, (num,))
    return tuple(jax.random.wrap_key_data(jax.device_put(row)) for row in data)


def permutation(key_data: np.ndarray, n: int) -> np.ndarray:
    """``jax.random.permutation(wrap_key_data(key_data), n)`` computed with NumPy.

    JAX shuffles by stable sorts on fresh 32-bit random keys, ``ceil(3 ln n / ln
    (2**32 - 1))`` rounds, each round's key split off the last; a stable NumPy sort
    of the same bits gives the same permutation. Threefry, partitionable layout only
    (`epoch_draws` checks).
    """
    x = np.arange(n, dtype=np.int32)
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(np.iinfo(np.uint32).max))
    key = np.asarray(key_data, np.uint32)
    for _ in range(rounds):
        key, sub = split_keys(key, (2,))
        hi, lo = hash_counters(sub, (n,))
        x = x[np.argsort(hi ^ lo, kind="stable")]
    return x


def step_keys(key_data: np.ndarray, steps: int) -> np.ndarray:
    """Raw data of an epoch's step keys, ``split(split(key)[1], steps)``, on the host.

    NumPy under JAX's default Threefry, JAX otherwise; the same values either way.
    """
    if not _threefry_partitionable():
        _, step_key = jax.random.split(jax.random.wrap_key_data(jax.device_put(key_data)))
        return np.asarray(jax.random.key_data(jax.random.split(step_key, steps)))
    _, step_data = split_keys(np.asarray(key_data, np.uint32), (2,))
    return split_keys(step_data, (steps,))


def epoch_draws(key_data: np.ndarray, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """An in-memory epoch's shuffle and step keys' data from its key's data, on the host.

    ``perm_key, step_key = split(key)``; the order is ``permutation(perm_key, n)``'s
    first ``steps * batch_size`` rows as ``(steps, batch_size)``, the step keys
    `step_keys`, with ``steps = n // batch_size``. Computed with NumPy under JAX's
    default Threefry (issue 37: the epoch program then holds no sort and no
    Threefry), by JAX otherwise; the same values either way.
    """
    steps = n // batch_size
    if _threefry_partitionable():
        perm_data, _ = split_keys(np.asarray(key_data, np.uint32), (2,))
        order = permutation(perm_data, n)
    else:
        perm_key, _ = jax.random.split(jax.random.wrap_key_data(jax.device_put(key_data)))
        order = np.asarray(jax.random.permutation(perm_key, n))
    return order[: steps * batch_size].reshape(steps, batch_size), step_keys(key_data, steps)
