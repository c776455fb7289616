"""The four flow families: shapes, inverse-forward closure, log-det closure, normalisation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.interface import ConfigError
from orrery.sbi._flows.flows import FLOW_FAMILIES, build_flow
from orrery.sbi._flows.linear_start import ConditionalLinearGaussian

SMALL = dict(num_layers=2, hidden_dim=16, depth=1, autoregressive_transform_units=4)


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_closure_and_change_of_variables(family):
    dim, cond_dim = 3, 4
    flow = build_flow(jr.key(0), flow_family=family, dim=dim, cond_dim=cond_dim, **SMALL)
    x = jr.normal(jr.key(1), (32, dim))
    cond = jr.normal(jr.key(2), (32, cond_dim))
    bij = flow.bijection

    @jax.jit
    def check(x, cond):
        u, ld_inv = jax.vmap(bij.inverse_and_log_det)(x, cond)
        x_back, ld_fwd = jax.vmap(bij.transform_and_log_det)(u, cond)
        log_prob = flow.log_prob(x, condition=cond)
        return x_back, ld_inv + ld_fwd, log_prob - (flow.base_dist.log_prob(u) + ld_inv)

    x_back, ld_sum, lp_gap = check(x, cond)
    assert float(jnp.max(jnp.abs(x_back - x))) < 1e-4
    assert float(jnp.max(jnp.abs(ld_sum))) < 1e-4
    assert float(jnp.max(jnp.abs(lp_gap))) < 1e-4
    samples = flow.sample(jr.key(3), (5,), condition=cond[0])
    assert samples.shape == (5, dim)


@pytest.mark.parametrize("family", ["spline", "neural_autoregressive"])
def test_one_dimensional_density_integrates_to_one(family):
    flow = build_flow(jr.key(4), flow_family=family, dim=1, cond_dim=2, **SMALL)
    # Two untrained NAF layers have slope ~0.05**2 in the tails: integrate widely.
    half = 14.0 if family == "spline" else 2000.0
    grid = jnp.linspace(-half, half, 40001)[:, None]
    cond = jnp.broadcast_to(jnp.array([0.3, -1.0]), (grid.shape[0], 2))
    density = np.exp(np.asarray(eqx.filter_jit(flow.log_prob)(grid, cond)))
    assert np.trapezoid(density, np.asarray(grid[:, 0])) == pytest.approx(1.0, abs=2e-3)


def test_bases_and_base_affine():
    for base in ("gaussian", "student_t"):
        plain = build_flow(
            jr.key(0), flow_family="affine", dim=2, cond_dim=2, base_distribution=base, **SMALL
        )
        affine = build_flow(
            jr.key(0),
            flow_family="affine",
            dim=2,
            cond_dim=2,
            base_distribution=base,
            use_base_affine=True,
            **SMALL,
        )
        n_plain = sum(a.size for a in jax.tree.leaves(plain.base_dist) if hasattr(a, "size"))
        n_affine = sum(a.size for a in jax.tree.leaves(affine.base_dist) if hasattr(a, "size"))
        assert n_affine >= n_plain + 4  # a trainable loc and scale per dimension
    heavy = build_flow(
        jr.key(0), flow_family="affine", dim=1, cond_dim=1, base_distribution="student_t", **SMALL
    )
    assert float(heavy.base_dist.log_prob(jnp.array([8.0]))) > float(
        jax.scipy.stats.norm.logpdf(8.0)
    )


def test_unknown_family_and_bad_naf_settings():
    with pytest.raises(ConfigError, match="spline"):
        build_flow(jr.key(0), flow_family="splin", dim=2, cond_dim=2, **SMALL)
    with pytest.raises(ConfigError, match="min_residual"):
        build_flow(
            jr.key(0),
            flow_family="neural_autoregressive",
            dim=2,
            cond_dim=2,
            neural_autoregressive_min_residual=0.0,
            **SMALL,
        )


def _layers(stack):
    """Coupling layers in an ``Invert(Scan(...))`` stack."""
    return next(a for a in jax.tree.leaves(stack.bijection.bijection) if eqx.is_array(a)).shape[0]


@pytest.mark.parametrize("family", ["spline", "spline_affine", "affine", "autoregressive"])
def test_the_linear_gaussian_layer_splits_the_spline_couplings(family, check_bijection):
    dim, cond_dim = 3, 4
    config = {**SMALL, "num_layers": 5, "linear_gaussian_end": True}
    flow = build_flow(jr.key(0), flow_family=family, dim=dim, cond_dim=cond_dim, **config)
    parts = flow.bijection.bijections
    if family.startswith("spline"):
        inner, linear, outer = parts
        base_side = inner.bijections[0] if family == "spline_affine" else inner
        assert (_layers(base_side), _layers(outer)) == (3, 2)
    else:
        linear = parts[-1]
    assert isinstance(linear, ConditionalLinearGaussian)
    k1, k2, k3 = jr.split(jr.key(5), 3)
    set_to = (jr.normal(k1, (dim, cond_dim)), jr.normal(k2, (dim,)), 0.3 * jr.normal(k3, (dim,)))
    at = parts.index(linear)
    flow = eqx.tree_at(
        lambda f: (
            f.bijection.bijections[at].weight,
            f.bijection.bijections[at].bias,
            f.bijection.bijections[at].log_diag,
        ),
        flow,
        set_to,
    )
    x, cond = jnp.array([0.4, -1.2, 2.0]), jnp.array([0.5, -0.3, 1.0, 0.1])
    check_bijection(flow.bijection, x, cond, 1e-3, 1e-4, 1e-4)
