"""Observation encoders: one network per block, fused into the posterior's context vector.

Every encoder acts on a single observation (vmap for batches). A block enters
as its normalised values ``(k,)`` and, when it has them, normalised
uncertainties ``(k,)``, which become a second input channel.

- sequences (``"spectrum"``, ``"time_series"``): `Conv1dEncoder`,
  `PatchEncoder` or `MLPEncoder` (``spectrum_encoder_type``);
- ``"photometry"`` and ``"auxiliary"``: `VectorEncoder` (an MLP);
- `ObservationEncoder` runs the block encoders and a fusion MLP to ``embedding_dim``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from orrery.interface import ConfigError, check_choice, check_positive_int

__all__ = [
    "SPECTRUM_ENCODER_TYPES",
    "Conv1dEncoder",
    "MLPEncoder",
    "ObservationEncoder",
    "PatchEncoder",
    "VectorEncoder",
    "build_observation_encoder",
]

SPECTRUM_ENCODER_TYPES: tuple[str, ...] = ("conv1d", "patch", "mlp")
_SEQUENCE_MODALITIES = ("spectrum", "time_series")


def _channels(values: Array, uncertainties: Array | None) -> Float[Array, "c k"]:
    if uncertainties is None:
        return values[None, :]
    return jnp.stack([values, uncertainties])


class Conv1dEncoder(eqx.Module):
    """Two strided 1-D convolutions over the wavelength axis, flattened, then a linear map.

    Args:
        in_channels: 1 (values) or 2 (values and uncertainties).
        length: number of wavelengths.
        out_dim: embedding size.
        hidden_dim: sets the channel count (``max(4, hidden_dim // 8)``).
        key: initialisation key.
    """

    conv1: eqx.nn.Conv1d
    conv2: eqx.nn.Conv1d
    head: eqx.nn.Linear

    def __init__(
        self, in_channels: int, length: int, out_dim: int, hidden_dim: int, *, key: PRNGKeyArray
    ) -> None:
        k1, k2, k3 = jr.split(key, 3)
        ch = max(4, hidden_dim // 8)
        self.conv1 = eqx.nn.Conv1d(in_channels, ch, 5, stride=2, padding=2, key=k1)
        self.conv2 = eqx.nn.Conv1d(ch, ch, 5, stride=2, padding=2, key=k2)
        out_len = ((length + 1) // 2 + 1) // 2
        self.head = eqx.nn.Linear(ch * out_len, out_dim, key=k3)

    def __call__(self, values: Array, uncertainties: Array | None = None) -> Array:
        h = jax.nn.gelu(self.conv1(_channels(values, uncertainties)))
        h = jax.nn.gelu(self.conv2(h))
        return self.head(h.reshape(-1))


class PatchEncoder(eqx.Module):
    """Patches of ``patch_size`` values embedded by a shared linear map, plus a learned
    position embedding, passed through an MLP and mean-pooled.

    The sequence is zero-padded to a whole number of patches.
    """

    patch_size: int = eqx.field(static=True)
    n_patches: int = eqx.field(static=True)
    embed: eqx.nn.Linear
    position: Array
    mixer: eqx.nn.MLP
    head: eqx.nn.Linear

    def __init__(
        self,
        in_channels: int,
        length: int,
        out_dim: int,
        hidden_dim: int,
        patch_size: int,
        *,
        key: PRNGKeyArray,
    ) -> None:
        k1, k2, k3, k4 = jr.split(key, 4)
        self.patch_size = check_positive_int(patch_size, "encoder_patch_size")
        self.n_patches = -(-length // patch_size)
        self.embed = eqx.nn.Linear(in_channels * patch_size, hidden_dim, key=k1)
        self.position = 0.02 * jr.normal(k2, (self.n_patches, hidden_dim))
        self.mixer = eqx.nn.MLP(
            hidden_dim, hidden_dim, hidden_dim, 1, activation=jax.nn.gelu, key=k3
        )
        self.head = eqx.nn.Linear(hidden_dim, out_dim, key=k4)

    def __call__(self, values: Array, uncertainties: Array | None = None) -> Array:
        x = _channels(values, uncertainties)
        pad = self.n_patches * self.patch_size - x.shape[1]
        x = jnp.pad(x, ((0, 0), (0, pad)))
        patches = x.reshape(x.shape[0], self.n_patches, self.patch_size).transpose(1, 0, 2)
        tokens = jax.vmap(self.embed)(patches.reshape(self.n_patches, -1)) + self.position
        tokens = jax.vmap(self.mixer)(tokens)
        return self.head(tokens.mean(0))


class MLPEncoder(eqx.Module):
    """An MLP on the flattened channels (values, then uncertainties)."""

    mlp: eqx.nn.MLP

    def __init__(
        self,
        in_channels: int,
        length: int,
        out_dim: int,
        hidden_dim: int,
        *,
        depth: int = 2,
        key: PRNGKeyArray,
    ) -> None:
        self.mlp = eqx.nn.MLP(
            in_channels * length, out_dim, hidden_dim, depth, activation=jax.nn.gelu, key=key
        )

    def __call__(self, values: Array, uncertainties: Array | None = None) -> Array:
        return self.mlp(_channels(values, uncertainties).reshape(-1))


class VectorEncoder(MLPEncoder):
    """The photometry/auxiliary encoder: an MLP on values (and uncertainties)."""

    def __init__(
        self,
        in_channels: int,
        length: int,
        out_dim: int,
        hidden_dim: int,
        *,
        depth: int = 2,
        key: PRNGKeyArray,
    ) -> None:
        super().__init__(in_channels, length, out_dim, hidden_dim, depth=depth, key=key)


#: The encoder of one observation block.
_BlockEncoder = Conv1dEncoder | PatchEncoder | MLPEncoder


class ObservationEncoder(eqx.Module):
    """All block encoders of an observation and the fusion MLP to the context vector.

    Call it with ``{block name: {"values": (k,), "uncertainties": (k,)}}`` for one
    observation; it returns the embedding ``(embedding_dim,)``.
    """

    block_names: tuple[str, ...] = eqx.field(static=True)
    blocks: dict[str, _BlockEncoder]
    fusion: eqx.nn.MLP
    skip: eqx.nn.Linear | None

    def __init__(
        self,
        blocks: Mapping[str, _BlockEncoder],
        fusion: eqx.nn.MLP,
        skip: eqx.nn.Linear | None = None,
    ) -> None:
        self.block_names = tuple(blocks)
        self.blocks = dict(blocks)
        self.fusion = fusion
        self.skip = skip

    def __call__(self, observation: Mapping[str, Mapping[str, Array]]) -> Float[Array, " e"]:
        parts = []
        for name in self.block_names:
            block = observation[name]
            parts.append(self.blocks[name](block["values"], block.get("uncertainties")))
        out = self.fusion(jnp.concatenate(parts))
        if self.skip is None:
            return out
        return out + self.skip(self.raw_features(observation))

    def raw_features(self, observation: Mapping[str, Mapping[str, Array]]) -> Float[Array, " m"]:
        """The raw observation as one vector: each block's values, then its uncertainties.

        Only reshapes and one concatenation (none for a single 1-D block without
        uncertainties): the linear start calls it eagerly under ``vmap``, where every
        operation is a program compiled of its own.
        """
        raw = []
        for name in self.block_names:
            block = observation[name]
            raw.append(jnp.reshape(block["values"], -1))
            if block.get("uncertainties") is not None:
                raw.append(jnp.reshape(block["uncertainties"], -1))
        return raw[0] if len(raw) == 1 else jnp.concatenate(raw)


def build_observation_encoder(
    schema: Mapping[str, Mapping[str, Any]],
    *,
    embedding_dim: int,
    spectrum_encoder_type: str = "conv1d",
    spectrum_embedding_dim: int = 64,
    photometry_embedding_dim: int = 64,
    encoder_hidden_dim: int = 128,
    encoder_patch_size: int = 32,
    n_wavelengths: int | None = None,
    linear_skip: bool = False,
    key: PRNGKeyArray,
) -> ObservationEncoder:
    """Build the encoder for an observation schema.

    Args:
        schema: ``{block: {"modality", "size", "has_uncertainties"}}`` (a dataset's
            ``observation_schema``).
        embedding_dim: size of the fused context vector.
        spectrum_encoder_type: ``"conv1d"``, ``"patch"`` or ``"mlp"``, for spectra and time series.
        spectrum_embedding_dim: output size of each sequence encoder.
        photometry_embedding_dim: output size of each photometry/auxiliary encoder.
        encoder_hidden_dim: hidden width of the encoders and the fusion MLP.
        encoder_patch_size: patch length of the ``"patch"`` encoder.
        n_wavelengths: when given, every ``"spectrum"`` block must have this many values.
        linear_skip: add a linear map of the raw observation (every block's values and
            uncertainties) to the context vector. It starts at zero, so the encoder
            starts as without it; a context linear in the data is then learned as by
            linear regression rather than through the MLPs.
        key: initialisation key.

    Returns:
        An `ObservationEncoder`.

    Raises:
        ConfigError: unknown encoder type, empty schema, or a spectrum of another length.
    """
    check_choice(spectrum_encoder_type, SPECTRUM_ENCODER_TYPES, "spectrum_encoder_type")
    if not schema:
        raise ConfigError("observation schema: expected at least one block")
    keys = jr.split(key, len(schema) + 1)
    blocks: dict[str, _BlockEncoder] = {}
    total = raw_total = 0
    for k, (name, spec) in zip(keys[:-1], schema.items(), strict=True):
        size, channels = int(spec["size"]), 2 if spec["has_uncertainties"] else 1
        modality = spec["modality"]
        if modality == "spectrum" and n_wavelengths is not None and size != n_wavelengths:
            raise ConfigError(
                f"n_wavelengths={n_wavelengths}, but spectrum block {name!r} has {size} "
                "wavelengths; set n_wavelengths to match the data"
            )
        if modality in _SEQUENCE_MODALITIES:
            out = spectrum_embedding_dim
            if spectrum_encoder_type == "conv1d":
                enc = Conv1dEncoder(channels, size, out, encoder_hidden_dim, key=k)
            elif spectrum_encoder_type == "patch":
                enc = PatchEncoder(
                    channels, size, out, encoder_hidden_dim, encoder_patch_size, key=k
                )
            else:
                enc = MLPEncoder(channels, size, out, encoder_hidden_dim, key=k)
        else:
            out = photometry_embedding_dim
            enc = VectorEncoder(channels, size, out, encoder_hidden_dim, depth=1, key=k)
        blocks[name] = enc
        total += out
        raw_total += size * channels
    fusion = eqx.nn.MLP(
        total, embedding_dim, encoder_hidden_dim, 1, activation=jax.nn.gelu, key=keys[-1]
    )
    skip = None
    if linear_skip:
        skip = eqx.nn.Linear(raw_total, embedding_dim, use_bias=False, key=keys[-1])
        skip = eqx.tree_at(lambda lin: lin.weight, skip, jnp.zeros_like(skip.weight))
    return ObservationEncoder(blocks, fusion, skip)
