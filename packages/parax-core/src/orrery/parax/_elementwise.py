"""The base of parax's elementwise bijectors, shared by `bijectors` and the batched updates.

`_batch` groups parameters whose transform acts elementwise (it can then run them on one
concatenated vector), so it needs the base class as much as `bijectors` does.
"""

from __future__ import annotations

from distreqx.bijectors import (
    AbstractForwardInverseBijector,
    AbstractFwdLogDetJacBijector,
    AbstractInvLogDetJacBijector,
)


class AbstractElementwise(
    AbstractForwardInverseBijector,
    AbstractFwdLogDetJacBijector,
    AbstractInvLogDetJacBijector,
    strict=True,
):
    """Elementwise bijector: subclasses give `forward_and_log_det` / `inverse_and_log_det`."""
