"""Every transform kind: shapes, priors, application, pack/unpack, deprecations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from orrery.interface import ConfigError
from orrery.lux import (
    AdditiveOffsetTransform,
    AffineTransform,
    EquinoxNNTransform,
    FunctionTransform,
    LinearTransform,
    NoOpTransform,
    OffsetTransform,
    PolyFeatureTransform,
    QuadraticTransform,
    ShapeSpec,
    TransformSequence,
)

Z = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)))


def _sample(priors, seed=0):
    keys = jax.random.split(jax.random.key(seed), max(len(priors), 1))
    return {k: p.sample(kk) for kk, (k, p) in zip(keys, priors.items(), strict=False)}


def test_shape_spec_resolves_named_dims():
    assert ShapeSpec(("output_size", "latent_size")).resolve(
        {"output_size": 4, "latent_size": 2}
    ) == (4, 2)
    assert ShapeSpec(("output_size", "one")).resolve({"output_size": 3}) == (3, 1)
    assert ShapeSpec(("data_size", 2)).resolve({"data_size": 7}) == (7, 2)
    with pytest.raises(ConfigError, match="data_size"):
        ShapeSpec(("data_size",)).resolve({"output_size": 3, "data_size": None})


def test_linear_transform():
    t = LinearTransform(4)
    pri = t.get_expanded_priors(2)
    assert pri["A"].batch_shape == (4, 2)
    p = _sample(pri)
    np.testing.assert_allclose(t.apply(Z, **p), Z @ p["A"].T, rtol=1e-5)


def test_affine_bias_broadcasts_per_output():
    # regression: upstream declares b as (output_size, 1) and A z + b becomes a matrix
    t = AffineTransform(4)
    pri = t.get_expanded_priors(2)
    assert pri["b"].batch_shape == (4,)
    p = _sample(pri)
    out = t.apply(Z, **p)
    assert out.shape == (5, 4)
    np.testing.assert_allclose(out, Z @ p["A"].T + p["b"], rtol=1e-5)


def test_quadratic_transform():
    t = QuadraticTransform(3)
    p = _sample(t.get_expanded_priors(2))
    assert p["Q"].shape == (3, 2, 2) and p["b"].shape == (3,)
    out = t.apply(Z, **p)
    expect = np.einsum("oij,ni,nj->no", p["Q"], Z, Z) + Z @ p["A"].T + p["b"]
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-5)


def test_offset_and_noop():
    t = OffsetTransform(2)
    p = _sample(t.get_expanded_priors(2))
    assert p["b"].shape == (2, 1)  # upstream's column; with vmap=True one offset per feature
    np.testing.assert_allclose(t.apply(Z, **p), Z + p["b"][:, 0], rtol=1e-6)
    n = NoOpTransform()
    assert n.get_expanded_priors(2) == {}
    np.testing.assert_array_equal(n.apply(Z), Z)
    assert n.output_size_for(2) == 2


def test_default_priors_are_unit_normal():
    p = LinearTransform(3).priors["A"]
    assert isinstance(p, dist.Normal)
    assert float(p.loc) == 0.0 and float(p.scale) == 1.0


def test_function_transform_names_from_signature_and_vmap_false():
    def fn(z, A, s):
        return A @ z * s

    t = FunctionTransform(
        3,
        fn,
        priors={"s": dist.HalfNormal(1.0)},
        shapes={"A": ShapeSpec(("output_size", "latent_size"))},
    )
    assert t.param_names() == ("A", "s")
    pri = t.get_expanded_priors(2)
    assert pri["A"].batch_shape == (3, 2) and pri["s"].batch_shape == ()
    p = _sample(pri)
    np.testing.assert_allclose(t.apply(Z, **p), Z @ p["A"].T * p["s"], rtol=1e-5)

    # vmap=False: per-object parameters shaped with data_size
    per = FunctionTransform(
        2, lambda z, c: z + c[:, None], shapes={"c": ShapeSpec(("data_size",))}, vmap=False
    )
    pri = per.get_expanded_priors(2, data_size=5)
    assert pri["c"].batch_shape == (5,)
    c = jnp.arange(5.0)
    np.testing.assert_allclose(per.apply(Z, c=c), Z + c[:, None])
    with pytest.raises(ConfigError, match="not an argument"):
        FunctionTransform(2, fn, priors={"B": dist.Normal(0, 1)})


def test_poly_feature_transform():
    t = PolyFeatureTransform(degree=2)
    out = t.apply(jnp.array([[1.0, 2.0]]))
    np.testing.assert_allclose(out, [[1, 1, 2, 1, 2, 4]])
    assert t.output_size_for(3) == 10 and t.get_expanded_priors(3) == {}


def test_transform_sequence_names_shapes_and_round_trip():
    seq = TransformSequence((PolyFeatureTransform(degree=2), AffineTransform(4)))
    pri = seq.get_expanded_priors(2)
    assert set(pri) == {"1:A", "1:b"} and pri["1:A"].batch_shape == (4, 6)
    flat = _sample(pri)
    nested = seq.unpack_pars(flat)
    assert nested[0] == {} and set(nested[1]) == {"A", "b"}
    assert seq.pack_pars(nested) == flat
    feats = PolyFeatureTransform(degree=2).apply(Z)
    expect = feats @ flat["1:A"].T + flat["1:b"]
    np.testing.assert_allclose(seq.apply(Z, *nested), expect, rtol=1e-5)
    np.testing.assert_allclose(seq.apply(Z, **flat), expect, rtol=1e-5)


def test_additive_offset_transform():
    t = AdditiveOffsetTransform(LinearTransform(3), offset_prior=dist.Normal(11.0, 3.0))
    pri = t.get_expanded_priors(2, data_size=5)
    assert pri["offset"].batch_shape == (5,) and pri["base:A"].batch_shape == (3, 2)
    flat = _sample(pri)
    out = t.apply(Z, **flat)
    np.testing.assert_allclose(out, Z @ flat["base:A"].T + flat["offset"][:, None], rtol=1e-5)
    nested = t.unpack_pars(flat)
    assert set(nested) == {"base", "offset"}
    assert t.pack_pars(nested) == flat
    with pytest.raises(ValueError, match="data_size"):
        t.get_expanded_priors(2)


def test_equinox_nn_transform():
    t = EquinoxNNTransform(
        3,
        lambda i, o, key: eqx.nn.MLP(i, o, 8, 1, key=key),
        weight_prior=dist.Normal(0, 0.1),
        bias_prior=dist.Normal(0, 0.01),
    )
    pri = t.get_expanded_priors(2)
    assert pri["layers.0.weight"].batch_shape == (8, 2)
    assert float(pri["layers.0.bias"].base_dist.scale) == pytest.approx(0.01)
    p = _sample(pri)
    out = t.apply(Z, **p)
    assert out.shape == (5, 3)
    h = jax.nn.relu(Z @ p["layers.0.weight"].T + p["layers.0.bias"])
    np.testing.assert_allclose(
        out, h @ p["layers.1.weight"].T + p["layers.1.bias"], rtol=1e-4, atol=1e-6
    )


def test_deprecated_param_priors_and_shapes_warn():
    t = LinearTransform(3)
    with pytest.warns(DeprecationWarning, match="priors"):
        assert "A" in t.param_priors
    with pytest.warns(DeprecationWarning, match="shapes"):
        assert "A" in t.param_shapes
    with pytest.warns(DeprecationWarning):
        t2 = LinearTransform(3, param_priors={"A": dist.Normal(0.0, 2.0)})
    assert float(t2.priors["A"].scale) == 2.0
    seq = TransformSequence((PolyFeatureTransform(), LinearTransform(2)))
    with pytest.warns(DeprecationWarning):
        assert len(seq.param_priors) == 2


def test_single_transform_pack_unpack_identity_and_checks():
    t = AffineTransform(2)
    pars = {"A": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    assert t.unpack_pars(t.pack_pars(pars)) == pars
    with pytest.raises(ConfigError, match="missing"):
        t.pack_pars({"A": pars["A"]})
    assert t.pack_pars({"A": pars["A"]}, ignore_missing=True) == {"A": pars["A"]}
    # extra entries pass through, as upstream's identity packing does
    assert t.unpack_pars({**pars, "C": 1.0}, ignore_missing=True)["C"] == 1.0
