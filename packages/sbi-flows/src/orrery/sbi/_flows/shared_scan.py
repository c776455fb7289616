"""A spline flow's log-density with its two coupling stacks in one ``lax.scan``.

With the linear-Gaussian start the recipe's flow is ``Chain([Invert(Scan(base-side
couplings)), Invert(affine), linear, Invert(Scan(parameter-side couplings))])``.
Evaluated as written, XLA compiles each stack's scan body, forward and backward, on
its own: two copies of the same coupling, a third of the training program's kernels
(issue 37). `flow_log_prob` runs both stacks through one scan over their
concatenated layers, with the layers between them applied once, by ``lax.cond``
(rematerialised for the gradient), at the step where the first stack ends. The
density is the same function (`flowjax`'s ``Transformed.log_prob``, summed in
another order: equal to rounding); any other flow takes `flowjax`'s own path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import Chain, Invert, Scan
from flowjax.distributions import unwrap  # paramax.unwrap, re-exported by flowjax
from jaxtyping import Array, Float

__all__ = ["flow_log_prob", "shared_stacks"]


class _Stacks(NamedTuple):
    """The parts of a flow whose coupling stacks can share one scan."""

    params: Any  # both stacks' array leaves, concatenated (log-density order)
    static: Any
    boundary: int  # layers of the first stack the density meets
    between: tuple[Any, ...]  # bijections between the stacks, in log-density order


def _flat_chain(bijection: Any) -> list[Any]:
    if isinstance(bijection, Chain):
        return [b for inner in bijection.bijections for b in _flat_chain(inner)]
    return [bijection]


def _scanned(bijection: Any) -> Any | None:
    """The stacked layers of ``Invert(Scan(layers))``, else None."""
    if isinstance(bijection, Invert) and isinstance(bijection.bijection, Scan):
        return bijection.bijection.bijection
    return None


def shared_stacks(bijection: Any) -> _Stacks | None:
    """Both coupling stacks of ``bijection`` (unwrapped) ready for one scan, or None.

    Applies to a chain that starts and ends with ``Invert(Scan(...))`` of layers of
    one structure (same static parts, same array shapes past the stacking axis).
    """
    parts = _flat_chain(bijection)
    if len(parts) < 3:
        return None
    first, last = _scanned(parts[0]), _scanned(parts[-1])
    if first is None or last is None:
        return None
    p_first, s_first = eqx.partition(first, eqx.is_array)
    p_last, s_last = eqx.partition(last, eqx.is_array)
    if jax.tree.structure(p_first) != jax.tree.structure(p_last):
        return None
    if eqx.tree_equal(s_first, s_last) is not True:
        return None
    leaves_first, leaves_last = jax.tree.leaves(p_first), jax.tree.leaves(p_last)
    if not leaves_first or any(
        a.shape[1:] != b.shape[1:] or a.dtype != b.dtype
        for a, b in zip(leaves_first, leaves_last, strict=True)
    ):
        return None
    # the log-density inverts the chain: the last stack's layers come first
    params = jax.tree.map(lambda b, a: jnp.concatenate([b, a]), p_last, p_first)
    between = tuple(reversed(parts[1:-1]))
    return _Stacks(params, s_first, leaves_last[0].shape[0], between)


def _row_log_det(stacks: _Stacks, x: Array, condition: Array | None) -> tuple[Array, Array]:
    """One point through the chain's inverse: the base point and ``log|det|``."""
    n_layers = jax.tree.leaves(stacks.params)[0].shape[0]

    def cross(y, stack_ld, chain_ld):
        chain_ld = chain_ld + stack_ld
        for bijection in stacks.between:
            y, ld = bijection.inverse_and_log_det(y, condition)
            chain_ld = chain_ld + ld.sum()
        return y, jnp.zeros_like(stack_ld), chain_ld

    def keep(y, stack_ld, chain_ld):
        return y, stack_ld, chain_ld

    # Rematerialised, the crossing's residuals for the gradient are its inputs and the
    # arrays it closes over (loop constants, which the scan keeps once); as a plain
    # cond its residuals were outputs of the cond, stacked once per layer.
    @jax.checkpoint
    def crossing(i, y, stack_ld, chain_ld):
        return jax.lax.cond(i == stacks.boundary - 1, cross, keep, y, stack_ld, chain_ld)

    def step(carry, xs):
        params, i = xs
        y, stack_ld, chain_ld = carry
        # each layer is one of flowjax's Scan layers, run as Invert(Scan).inverse runs it
        y, ld = eqx.combine(params, stacks.static).transform_and_log_det(y, condition)
        return crossing(i, y, stack_ld + ld.sum(), chain_ld), None

    zero = jnp.zeros((), x.dtype)
    (z, stack_ld, chain_ld), _ = jax.lax.scan(
        step, (x, zero, zero), (stacks.params, jnp.arange(n_layers))
    )
    return z, chain_ld + stack_ld


def flow_log_prob(
    flow: Any, x: Float[Array, "n d"], condition: Float[Array, "n c"] | None
) -> Float[Array, " n"]:
    """``flow.log_prob(x, condition=condition)`` for rows ``x`` and their conditions."""
    flow = unwrap(flow)
    if condition is None or x.ndim != 2 or jnp.ndim(condition) != 2:
        return flow.log_prob(x, condition=condition)
    stacks = shared_stacks(flow.bijection)
    if stacks is None:
        return flow.log_prob(x, condition=condition)

    def row(x_i: Array, c_i: Array) -> Array:
        z, log_det = _row_log_det(stacks, x_i, c_i)
        log_prob = flow.base_dist._log_prob(z, c_i) + log_det
        return jnp.where(jnp.isnan(log_prob), -jnp.inf, log_prob)

    return jax.vmap(row)(x, condition)
