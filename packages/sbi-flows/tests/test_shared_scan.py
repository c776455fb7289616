"""The two coupling stacks of a linear-start spline flow evaluated in one scan (issue 37).

`flow_log_prob` must be `flowjax`'s ``log_prob`` to rounding, with the same
gradients, and must leave every other flow to `flowjax`.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from flowjax.bijections import Chain

from orrery.sbi._flows.flows import build_flow
from orrery.sbi._flows.shared_scan import flow_log_prob, shared_stacks
from orrery.sbi._posterior.build import compiled_build

DIM, COND = 4, 6


@eqx.filter_jit
def _perturbed(flow, key):
    # away from the identity the couplings start at: every layer does something
    leaves, tree = jax.tree.flatten(flow)
    keys = jr.split(key, len(leaves))
    leaves = [
        leaf + 0.2 * jr.normal(k, leaf.shape, leaf.dtype) if eqx.is_inexact_array(leaf) else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, leaves)


@functools.cache
def _flow(family="spline_affine", layers=5, linear=True, width=16, seed=0):
    key, noise = jr.split(jr.key(seed))
    make = functools.partial(
        build_flow,
        flow_family=family,
        dim=DIM,
        cond_dim=COND,
        num_layers=layers,
        hidden_dim=width,
        depth=2,
        num_spline_bins=12,
        spline_bound=5.0,
        linear_gaussian_end=linear,
    )
    # built as a fit builds it (eagerly, every op would be a program of its own)
    flow = compiled_build(make, key, ("test_shared_scan", family, layers, linear, width))
    return _perturbed(flow, noise)


def _points(n=40):
    return jr.normal(jr.key(1), (n, DIM)), jr.normal(jr.key(2), (n, COND))


def _float64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


@eqx.filter_jit
def _ours(flow, x, c):
    return flow_log_prob(flow, x, c)


@eqx.filter_jit
def _flowjax(flow, x, c):
    return flow.log_prob(x, condition=c)


@pytest.mark.parametrize(
    "family, layers", [("spline", 3), ("spline_affine", 2), ("spline_affine", 5)]
)
def test_one_scan_gives_flowjax_log_prob(family, layers):
    # 2 layers: one coupling on each side of the linear layer; 5: the recipe's 3 + 2
    flow32 = _flow(family, layers)  # built (and cached) in float32, as a fit builds it
    with jax.enable_x64(True):
        flow, (x, c) = _float64((flow32, _points()))
        assert shared_stacks(flow.bijection) is not None
        ours, theirs = _ours(flow, x, c), _flowjax(flow, x, c)
        assert np.isfinite(np.asarray(theirs)).all()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_one_scan_gives_flowjax_gradients():
    flow32 = _flow()
    with jax.enable_x64(True):
        flow, (x, c) = _float64((flow32, _points()))
        params, static = eqx.partition(flow, eqx.is_inexact_array)

        @jax.jit
        def grads(p):
            def loss(fn, p):
                return -jnp.mean(fn(eqx.combine(p, static), x, c))

            ours = jax.grad(lambda p: loss(flow_log_prob, p))(p)
            theirs = jax.grad(lambda p: loss(lambda f, a, b: f.log_prob(a, condition=b), p))(p)
            return ours, theirs

        ours, theirs = grads(params)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        # the parameter-side stack (last in the chain) gets a gradient: it is trained
        outer = ours.bijection.bijections[-1].bijection.bijection
        assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(outer))


def test_a_jitted_batch_matches_row_by_row():
    flow = _flow()
    x, c = _points(8)
    batched = _ours(flow, x, c)
    one = eqx.filter_jit(lambda f, a, b: f.log_prob(a, condition=b))
    rows = [one(flow, x[i], c[i]) for i in range(8)]
    np.testing.assert_allclose(batched, np.asarray(rows), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "family, linear", [("spline", False), ("affine", True), ("autoregressive", True)]
)
def test_other_flows_take_flowjax_path(family, linear):
    flow = _flow(family, 4, linear)
    x, c = _points()
    assert shared_stacks(flow.bijection) is None
    np.testing.assert_array_equal(_ours(flow, x, c), _flowjax(flow, x, c))


def test_stacks_of_another_shape_are_not_merged():
    # the same chain layout, but the parameter-side stack is narrower
    wide, narrow = _flow(width=16), _flow(width=8, seed=3)
    parts = list(wide.bijection.bijections)
    parts[-1] = narrow.bijection.bijections[-1]
    flow = eqx.tree_at(lambda f: f.bijection, wide, Chain(parts))
    assert shared_stacks(flow.bijection) is None
    x, c = _points()
    np.testing.assert_array_equal(_ours(flow, x, c), _flowjax(flow, x, c))


def test_a_missing_condition_fails_as_in_flowjax():
    flow = _flow()
    x, _ = _points(5)
    with pytest.raises(Exception) as theirs:
        flow.log_prob(x, condition=None)
    with pytest.raises(type(theirs.value)):
        flow_log_prob(flow, x, None)


def test_unbatched_and_nan_rows_follow_flowjax():
    flow = _flow()
    x, c = _points(5)
    # one point without a batch axis: flowjax's own path
    np.testing.assert_array_equal(_ours(flow, x[0], c[0]), _flowjax(flow, x[0], c[0]))
    # a NaN density is flowjax's -inf (outside the support), not NaN
    x = x.at[2, 0].set(jnp.nan)
    ours, theirs = _ours(flow, x, c), _flowjax(flow, x, c)
    assert float(ours[2]) == float(theirs[2]) == -np.inf
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
