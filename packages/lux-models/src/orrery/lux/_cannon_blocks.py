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


def row_blocks(body: Callable[..., Any], arrays: Sequence[Array], init: Any, rows: int) -> Any:
    """Fold ``acc = body(acc, *blocks)`` over consecutive row blocks of ``arrays``.

    Every array shares the leading (stars) axis; blocks hold ``rows`` rows, the
    last one whatever remains. The blocks are slices of the inputs, not copies
    of them.
    """
    n = arrays[0].shape[0]
    n_full = n // rows

    def step(b, acc):
        start = b * rows
        return body(acc, *(jax.lax.dynamic_slice_in_dim(a, start, rows, 0) for a in arrays))

    acc = jax.lax.fori_loop(0, n_full, step, init) if n_full else init
    if n_full * rows < n:
        acc = body(acc, *(a[n_full * rows :] for a in arrays))
    return acc


def col_sum(x: Float[Array, "b p"]) -> Float[Array, " p"]:
    """Sum over the rows of a block as a vectorised product ``ones @ x``."""
    return (jnp.ones((1, x.shape[0]), x.dtype) @ x)[0]


def col_max(x: Float[Array, "b p"]) -> Float[Array, " p"]:
    """Maximum over the rows of a block, by halving (elementwise over pixels).

    Each step takes the elementwise maximum of the block's first and second
    halves (an odd row is carried over), so a block of ``b`` rows costs about
    ``log2 b`` vectorised operations in the program. (A row-by-row loop in
    Python unrolled ``b`` of them: thousands for a few hundred pixels, which
    made the training program take a minute to compile.)
    """
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        top = jnp.maximum(x[:half], x[half : 2 * half])
        x = top if x.shape[0] % 2 == 0 else jnp.concatenate([top, x[2 * half :]], axis=0)
    return x[0]
