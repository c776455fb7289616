"""The size of the Lux optimiser's exact-block programs: pinned, nearly independent of the shape.

The least-squares blocks of `optimize_iterative` compile the two largest programs
of a first Lux fit (`_solve_rows`, `_solve_latents`; about 1.5 s each on a loaded
2-core machine, ``benchmarks/cold_start.py --lux``). Compile time follows program
size, so these tests guard it without timing anything: only tracing and lowering
run. When a deliberate change moves a pin, update it with the new count.
"""

import jax
import jax.numpy as jnp
import pytest

from orrery.lux import optimize as _optimize

#: relative margin around each pin
MARGIN = 0.15
#: StableHLO ops of the output block (2 latents, affine) and of the latent block (one output)
PIN_ROWS, PIN_LATENTS = 228, 134
SHAPES = [(60, 8), (2000, 200), (2000, 8575)]


def _ops(text: str) -> int:
    return sum(1 for line in text.splitlines() if " = " in line)


def _sizes(n: int, p: int, latents: int = 2) -> tuple[int, int]:
    sd, f32 = jax.ShapeDtypeStruct, jnp.float32
    q = latents + 1
    rows = _optimize._solve_rows.lower(
        sd((n, q), f32), sd((n, p), f32), sd((n, p), f32), sd((p, q), f32), sd((p, q), f32)
    )
    lat = _optimize._solve_latents.lower(
        [sd((p, latents), f32)],
        [sd((p,), f32)],
        [sd((n, p), f32)],
        [sd((n, p), f32)],
        sd((n, latents), f32),
        sd((n, latents), f32),
    )
    return _ops(rows.as_text()), _ops(lat.as_text())


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_block_programs_are_pinned(shape):
    rows, lat = _sizes(*shape)
    assert abs(rows - PIN_ROWS) <= MARGIN * PIN_ROWS, rows
    assert abs(lat - PIN_LATENTS) <= MARGIN * PIN_LATENTS, lat
