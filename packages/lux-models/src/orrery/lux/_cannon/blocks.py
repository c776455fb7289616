"""Passes over ``(stars, pixels)`` arrays one block of stars at a time.

On a CPU the training loop of The Cannon is bound by memory traffic, and above
all by fresh buffers: writing a new array the size of the data (weights,
squared residuals, ``w·y``) costs as much as three read-only passes, because
every page of it is faulted in anew. A pass here therefore never materialises
anything of the data's size. It walks the stars in blocks of a few rows, forms
what it needs (residuals, weights) for that block only, where it stays in
cache, and folds it into per-pixel accumulators: sums over the block's stars
are small matrix products (``ones @ block``, ``featuresᵀ @ block``), which XLA
vectorises over pixels, where a plain column reduction is not vectorised on
CPU (in float64 especially).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

#: bytes of one ``(rows, pixels)`` block in the reading passes (about L2-sized)
PASS_BYTES = 1_500_000
#: bytes of one block of weights in the Gram pass (larger blocks keep its products efficient)
GRAM_BYTES = 2_500_000


def block_rows(n_rows: int, n_cols: int, itemsize: int, target: int | None = None) -> int:
    """Rows per block: about ``target`` bytes (`PASS_BYTES`) of an ``(n_rows, n_cols)`` array.

    At least 8 rows (or all of them), at most all.
    """
    target = PASS_BYTES if target is None else target
    return int(max(1, min(n_rows, max(8, target // max(n_cols * itemsize, 1)))))


def row_blocks(
    body: Callable[..., Any],
    arrays: Sequence[Array],
    init: Any,
    rows: int,
    weights: int = 2,
) -> Any:
    """Fold ``acc = body(acc, *blocks)`` over consecutive row blocks of ``arrays``.

    Every array shares the leading (stars) axis; blocks hold ``rows`` rows and
    are slices of the inputs, not copies of them. All blocks run through one
    loop body, so the program does not grow with the data's shape: when
    ``rows`` does not divide the number of rows, the last block is the last
    ``rows`` rows, and the rows it shares with the block before have their
    entries of ``arrays[weights]`` set to 0. The body must be such that a row
    whose weights (inverse variances) are 0 adds nothing to any accumulator, as
    every pass of The Cannon's training is. (A separate body for a shorter last
    block doubled the program of every pass.)
    """
    n = arrays[0].shape[0]
    n_blocks = -(-n // rows)
    ragged = n % rows != 0

    def step(b, acc):
        start = jnp.minimum(b * rows, n - rows) if ragged else b * rows
        blocks = [jax.lax.dynamic_slice_in_dim(a, start, rows, 0) for a in arrays]
        if ragged:  # rows already summed by the block before count for nothing
            fresh = jnp.arange(rows) >= b * rows - start
            blocks[weights] = blocks[weights] * fresh[:, None].astype(blocks[weights].dtype)
        return body(acc, *blocks)

    return jax.lax.fori_loop(0, n_blocks, step, init)


def col_sum(x: Float[Array, "b p"]) -> Float[Array, " p"]:
    """Sum over the rows of a block as a vectorised product ``ones @ x``."""
    return (jnp.ones((1, x.shape[0]), x.dtype) @ x)[0]


def col_max(x: Float[Array, "b p"]) -> Float[Array, " p"]:
    """Maximum over the rows of a block (one reduction; elementwise over pixels)."""
    return jnp.max(x, axis=0)
