"""Observation encoders on spectra with uncertainties and on photometry."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from orrery.interface import ConfigError
from orrery.sbi.encoders import build_observation_encoder

SCHEMA = {
    "spec": {"modality": "spectrum", "size": 40, "has_uncertainties": True},
    "phot": {"modality": "photometry", "size": 5, "has_uncertainties": False},
}


def _observations(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "spec": {
            "values": jnp.asarray(rng.normal(size=(batch, 40)), jnp.float32),
            "uncertainties": jnp.asarray(rng.uniform(0.1, 1, size=(batch, 40)), jnp.float32),
        },
        "phot": {"values": jnp.asarray(rng.normal(size=(batch, 5)), jnp.float32)},
    }


@pytest.mark.parametrize("kind", ["conv1d", "patch", "mlp"])
def test_encoder_shapes_and_use_of_uncertainties(kind):
    enc = build_observation_encoder(
        SCHEMA,
        embedding_dim=6,
        spectrum_encoder_type=kind,
        spectrum_embedding_dim=8,
        photometry_embedding_dim=4,
        encoder_hidden_dim=16,
        encoder_patch_size=16,
        key=jr.key(0),
    )
    obs = _observations(3)
    emb = jax.vmap(enc)(obs)
    assert emb.shape == (3, 6)
    assert bool(jnp.all(jnp.isfinite(emb)))
    # The uncertainty channel enters the embedding.
    changed = jax.tree.map(lambda a: a, obs)
    changed["spec"] = dict(obs["spec"], uncertainties=obs["spec"]["uncertainties"] * 3)
    assert not np.allclose(jax.vmap(enc)(changed), emb)
    # Each observation is encoded independently of the others in the batch.
    single = enc(jax.tree.map(lambda a: a[1], obs))
    np.testing.assert_allclose(single, emb[1], rtol=1e-5, atol=1e-6)


def test_block_encoders_have_the_requested_sizes():
    enc = build_observation_encoder(
        SCHEMA,
        embedding_dim=6,
        spectrum_embedding_dim=8,
        photometry_embedding_dim=4,
        encoder_hidden_dim=16,
        key=jr.key(1),
    )
    one = jax.tree.map(lambda a: a[0], _observations(1))
    assert enc.blocks["spec"](**one["spec"]).shape == (8,)
    assert enc.blocks["phot"](one["phot"]["values"]).shape == (4,)
    assert enc.block_names == ("spec", "phot")


def test_linear_skip_starts_at_zero_and_adds_a_linear_map_of_the_raw_observation():
    kwargs = dict(
        embedding_dim=6,
        spectrum_embedding_dim=8,
        photometry_embedding_dim=4,
        encoder_hidden_dim=16,
        key=jr.key(2),
    )
    plain = build_observation_encoder(SCHEMA, **kwargs)
    skip = build_observation_encoder(SCHEMA, linear_skip=True, **kwargs)
    assert plain.skip is None and skip.skip.weight.shape == (6, 2 * 40 + 5)
    obs = _observations(4, seed=1)
    np.testing.assert_array_equal(jax.vmap(skip)(obs), jax.vmap(plain)(obs))
    weight = jr.normal(jr.key(3), skip.skip.weight.shape)
    trained = eqx.tree_at(lambda e: e.skip.weight, skip, weight)
    raw = jnp.concatenate(
        [obs["spec"]["values"], obs["spec"]["uncertainties"], obs["phot"]["values"]], axis=1
    )
    np.testing.assert_allclose(
        jax.vmap(trained)(obs) - jax.vmap(plain)(obs), raw @ weight.T, rtol=1e-4, atol=1e-4
    )


def test_wrong_spectrum_length_and_unknown_encoder_are_rejected():
    with pytest.raises(ConfigError, match="n_wavelengths=233"):
        build_observation_encoder(SCHEMA, embedding_dim=4, n_wavelengths=233, key=jr.key(0))
    with pytest.raises(ConfigError, match="conv1d"):
        build_observation_encoder(
            SCHEMA, embedding_dim=4, spectrum_encoder_type="conv", key=jr.key(0)
        )
