"""The containers of an ensemble fit: `EnsembleState` and `EnsembleResult`."""

from __future__ import annotations

from typing import NamedTuple

import jax
from jaxtyping import Array, Float, Int, PyTree

__all__ = ["EnsembleResult", "EnsembleState"]


class EnsembleState(NamedTuple):
    """Parameters and optimizer state of every member, stacked on a leading ``(E,)`` axis.

    Attributes:
        params: the parameter pytree. Array leaves carry the member axis;
            non-array leaves (an activation function inside an equinox Module)
            are shared by all members.
        opt_state: the optimizer state built on the inexact-array part of
            ``params``, with the same member axis.
    """

    params: PyTree
    opt_state: PyTree


class _ResultFields(NamedTuple):
    params: PyTree
    losses: Float[Array, "E T"]
    skipped_steps: Int[Array, " E"] | None = None
    state: PyTree = None
    num_steps: int | None = None


class EnsembleResult(_ResultFields):
    """What a ``run`` returns: final parameters, loss history and run bookkeeping.

    It unpacks like the two-field tuple of the upstream API,
    ``params, losses = result``; the extra fields are read as attributes.

    Attributes:
        params: final parameters, array leaves stacked on ``(E,)``. For
            `EnsembleVI` these are the constrained guide
            parameters.
        losses: per-member loss at every step of this run, ``(E, num_epochs)``,
            each measured before that step's update.
        skipped_steps: per-member number of steps whose loss, gradient or
            update was not finite (``(E,)`` integers). Under
            ``on_nonfinite="skip"`` those steps were not applied; under
            ``"ignore"`` they were. Counts accumulate across continued runs.
        state: the final optimizer state (an `EnsembleState` for MAP,
            a stacked ``numpyro.infer.svi.SVIState`` for VI); pass the result
            as ``init_state`` to continue training.
        num_steps: the total number of optimizer steps taken since
            initialisation, continued runs included (the minibatch schedule
            is indexed by it).
    """

    __slots__ = ()

    def __iter__(self):  # two-field unpacking, as upstream
        yield self.params
        yield self.losses

    def __getnewargs__(self):
        return tuple(self[i] for i in range(len(self._fields)))

    def _asdict(self) -> dict[str, PyTree]:
        return {name: self[i] for i, name in enumerate(self._fields)}

    def _replace(self, **changes: PyTree) -> EnsembleResult:
        return type(self)(**{**self._asdict(), **changes})


def _flatten_result(result: EnsembleResult):
    children = [(jax.tree_util.GetAttrKey(f), result[i]) for i, f in enumerate(result._fields[:4])]
    return children, result.num_steps


def _unflatten_result(num_steps: int | None, children) -> EnsembleResult:
    return EnsembleResult(*children, num_steps=num_steps)


# Registered explicitly so that `num_steps` (a Python int) is metadata rather than a leaf.
jax.tree_util.register_pytree_with_keys(EnsembleResult, _flatten_result, _unflatten_result)
