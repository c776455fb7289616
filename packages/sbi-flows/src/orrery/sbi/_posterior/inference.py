"""Encoding, sampling and scoring of a fitted flow posterior (a mixin of the posterior).

Two conventions hold throughout:

- **Observations are never guessed to be embeddings.** An observation is its
  blocks (`ObservationBlock`s), an `EncodedObservation`, or, for a posterior
  trained on a single block, that block's raw values (checked and normalised
  like a block). Any other array is refused.
- **The prior's support is respected.** When the dataset's bounds were given
  (a bounded prior), a physical-space posterior's draws outside the box are
  rejected and redrawn by default, the acceptance rate is reported, and
  `log_prob` is -inf outside the support in every space.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from orrery.interface import (
    ConfigError,
    ShapeError,
    ValueDomainError,
    as_int_seed,
    check_finite,
    check_positive_int,
)

from .._precision import in_float32
from .._preprocess import forward, forward_uncertainties
from .._sharding import gather, shard_batch
from ..observations import EncodedObservation, ObservationBlock, blocks_by_name
from ..samples import PosteriorSamples, clamp_nonfinite
from . import model as _model
from .state import PosteriorState

#: A warning is issued when fewer than this share of proposed draws lie in the support.
ACCEPTANCE_WARNING_THRESHOLD = 0.2
#: Rejection gives up (with an error) after this many rounds of ``n_samples`` proposals.
MAX_REJECTION_ROUNDS = 100


def _is_blocks(obj: Any) -> bool:
    if isinstance(obj, ObservationBlock):
        return True
    return (
        isinstance(obj, (list, tuple))
        and len(obj) > 0
        and all(isinstance(b, ObservationBlock) for b in obj)
    )


class PosteriorInference(PosteriorState):
    """Mixin of `ConditionalFlowPosterior`: encoding, sampling, densities, support."""

    #: Space of the truths, draws and densities exchanged with `orrery.sbi.diagnostics`.
    diagnostics_space: ClassVar[str] = "physical"

    # ------------------------------------------------------------------ helpers
    def _normalise_blocks(self, blocks: Any) -> dict[str, dict[str, np.ndarray]]:
        by_name = blocks_by_name(blocks)
        schema = self._require_schema()
        missing = [n for n in schema if n not in by_name]
        extra = [n for n in by_name if n not in schema]
        if missing or extra:
            raise ConfigError(
                f"blocks: expected the blocks {sorted(schema)} the posterior was trained on, "
                f"missing {missing}, unexpected {extra}"
            )
        out = {}
        for name, spec in schema.items():
            block = by_name[name]
            if block.modality != spec["modality"]:
                raise ConfigError(
                    f"block {name!r}: expected modality {spec['modality']!r}, "
                    f"got {block.modality!r}"
                )
            if block.size != spec["size"]:
                raise ShapeError(
                    f"block {name!r}: expected {spec['size']} values, got {block.size}"
                )
            if spec["has_uncertainties"] and block.uncertainties is None:
                raise ConfigError(f"block {name!r}: the posterior was trained with uncertainties")
            if not spec["has_uncertainties"] and block.uncertainties is not None:
                raise ConfigError(
                    f"block {name!r}: the posterior was trained without uncertainties; drop them"
                )
            prep = None
            if self.preprocessing_metadata is not None:
                prep = self.preprocessing_metadata.get(name)
                if prep is None:  # never skip a block's normalisation silently
                    raise ConfigError(
                        f"block {name!r}: the posterior has no preprocessing entry for it; "
                        "its normalisation is unknown"
                    )
            # the recorded transform, centre and scale: exactly as the training batches
            entry = {"values": forward(block.values, prep).astype(np.float32)}
            if block.uncertainties is not None:  # the schema's has_uncertainties (checked)
                sigma = forward_uncertainties(block.values, block.uncertainties, prep)
                entry["uncertainties"] = sigma.astype(np.float32)
            out[name] = entry
        return out

    def _raw_as_blocks(self, values: Any, what: str) -> list[ObservationBlock]:
        """A raw vector as the single block of a one-block posterior, else a clear error."""
        arr = np.asarray(values)
        schema = self._require_schema()
        hint = (
            "pass the observation as ObservationBlock(s) or an EncodedObservation from "
            "encode_observation (a raw array is never taken as an embedding)"
        )
        if len(schema) != 1:
            raise ConfigError(
                f"{what}: got a raw array of shape {arr.shape}, but the posterior was trained "
                f"on the blocks {sorted(schema)}; {hint}"
            )
        ((name, spec),) = schema.items()
        if spec["has_uncertainties"]:
            raise ConfigError(
                f"{what}: the block {name!r} was trained with uncertainties; a raw array has "
                f"none; {hint}"
            )
        if arr.ndim != 1 or arr.shape[0] != spec["size"]:
            raise ShapeError(
                f"{what}: expected the raw values of block {name!r}, shape ({spec['size']},), "
                f"got shape {arr.shape}; {hint}"
            )
        return [ObservationBlock(spec["modality"], arr, name=name)]

    def _embedding_of(self, observation: Any) -> np.ndarray:
        if isinstance(observation, EncodedObservation):
            emb = check_finite(np.asarray(observation.embedding, np.float32), "observation")
            if emb.shape != (self.embedding_dim,):
                raise ShapeError(
                    f"observation: expected an embedding of shape ({self.embedding_dim},), "
                    f"got {emb.shape}"
                )
            return emb
        if not _is_blocks(observation):
            if isinstance(observation, (list, tuple)) and any(
                isinstance(b, ObservationBlock) for b in observation
            ):
                raise ConfigError("observation: expected a list of ObservationBlock only")
            observation = self._raw_as_blocks(observation, "observation")
        return np.asarray(self.encode_observation(observation).embedding, np.float32)

    def _embeddings_of_many(self, observations: Any) -> np.ndarray:
        """``(n, embedding_dim)`` context vectors of ``n`` observations (see the diagnostics)."""
        self._require_fitted()
        if isinstance(observations, (EncodedObservation, ObservationBlock)):
            raise ConfigError("observations: expected a sequence of observations, got a single one")
        if isinstance(observations, np.ndarray) or hasattr(observations, "__array__"):
            arr = np.asarray(observations)
            if arr.ndim != 2:
                raise ShapeError(
                    f"observations: expected raw observations of shape (n, k), got {arr.shape}"
                )
            items: Sequence[Any] = [self._raw_as_blocks(row, "observations") for row in arr]
        else:
            items = list(observations)
        if not items:
            raise ShapeError("observations: expected at least one observation")
        if all(isinstance(o, EncodedObservation) for o in items):
            return np.stack([self._embedding_of(o) for o in items])
        blocks = [
            o if _is_blocks(o) else self._raw_as_blocks(o, f"observations[{i}]")
            for i, o in enumerate(items)
        ]
        return np.stack([e.embedding for e in self.batch_encode_observation(blocks)])

    # ------------------------------------------------------------------ support
    def _support_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Physical bounds of the prior's support, when the dataset gave them."""
        space = self._require_space()
        if getattr(self, "support_bounded", False) and space.lower is not None:
            if space.upper is not None:
                return space.lower, space.upper
        return None

    def diagnostics_support(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Physical box ``(lower, upper)`` outside which the posterior has no mass.

        The prior's bounds when the dataset gave them, and for ``"cube"`` and
        ``"unconstrained"`` spaces the box they map (draws never leave it);
        ``None`` for a physical-space posterior without given bounds. The
        calibration diagnostics warn about truths outside it.
        """
        self._require_fitted()
        space = self._require_space()
        if space.kind == "physical":
            return self._support_box()
        if space.lower is None or space.upper is None:
            return None
        return space.lower, space.upper

    def _in_support(self, s: np.ndarray) -> np.ndarray:
        """Whether each vector of ``s`` (in ``parameter_space``) lies in the support."""
        s = np.asarray(s)
        ok = np.all(np.isfinite(s), axis=-1)
        space = self._require_space()
        if any(space.log_dims):  # a positive prior's parameters, modelled in log space
            ok &= space.contains(s)
        box = self._support_box()
        if space.kind == "cube":
            ok &= np.all((s >= 0) & (s <= 1), axis=-1)
        elif space.kind == "physical" and box is not None:
            lo, hi = box
            ok &= np.all((s >= lo) & (s <= hi), axis=-1)
        return ok

    def _rejects(self, reject_outside_support: bool) -> bool:
        return bool(reject_outside_support) and (
            self._require_space().kind == "physical" and self._support_box() is not None
        )

    @staticmethod
    def _warn_acceptance(rate: float, where: str) -> None:
        if rate < ACCEPTANCE_WARNING_THRESHOLD:
            warnings.warn(
                f"{where}: only {rate:.1%} of the posterior's draws fell inside the prior's "
                "bounds and were kept (the rest were rejected and redrawn); the flow puts "
                "much mass outside the support: consider parameter_space='unconstrained' "
                "or more training",
                UserWarning,
                stacklevel=4,
            )

    def _fill_in_support(self, draw: Any, n: int, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(batch, n, d)`` with ``draw(key)`` until every row has ``n`` in-support draws.

        Round 0 uses ``key`` itself (so when every draw is inside, the result equals
        the raw draws); round ``r`` uses ``fold_in(key, r)``.

        Returns:
            The draws and each row's acceptance rate (in-support share of its proposals).
        """
        kept: list[list[np.ndarray]] | None = None
        counts = accepted = proposed = np.zeros(0, int)  # sized at the first round
        for r in range(MAX_REJECTION_ROUNDS):
            block = np.asarray(draw(key if r == 0 else jr.fold_in(key, r)))
            ok = self._in_support(block)
            if kept is None:
                kept = [[] for _ in range(block.shape[0])]
                counts = np.zeros(block.shape[0], int)
                accepted = np.zeros(block.shape[0], int)
                proposed = np.zeros(block.shape[0], int)
            for i in np.flatnonzero(counts < n):
                good = block[i][ok[i]]
                kept[i].append(good[: n - counts[i]])
                counts[i] += min(len(good), n - counts[i])
                accepted[i] += len(good)
                proposed[i] += n
            if np.all(counts >= n):
                return np.stack([np.concatenate(k) for k in kept]), accepted / proposed
        worst = float(np.min(accepted / proposed))
        raise ValueDomainError(
            f"n_samples: after {MAX_REJECTION_ROUNDS} rounds of {n} proposals only "
            f"{worst:.3%} of the draws lay inside the prior's bounds, too few to fill "
            f"{n} samples; pass reject_outside_support=False for the raw draws"
        )

    # ------------------------------------------------------------------ public API
    @in_float32
    def encode_observation(self, blocks: Sequence[ObservationBlock]) -> EncodedObservation:
        """Encode one observation (its blocks) into the posterior's context vector."""
        return self.batch_encode_observation([blocks])[0]

    @in_float32
    def batch_encode_observation(
        self, blocks_list: Sequence[Sequence[ObservationBlock]]
    ) -> list[EncodedObservation]:
        """Encode many observations in one vmapped pass; one `EncodedObservation` each."""
        model = self._require_fitted()
        if len(blocks_list) == 0:
            return []
        normalised = [self._normalise_blocks(b) for b in blocks_list]
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *normalised)
        emb = np.asarray(_model.embed_batch(model, stacked))
        schema = self._require_schema()
        meta = {
            "block_names": list(schema),
            "modalities": [s["modality"] for s in schema.values()],
        }
        return [EncodedObservation(e, dict(meta)) for e in emb]

    @in_float32
    def sample_posterior(
        self,
        observation: EncodedObservation | Sequence[ObservationBlock],
        n_samples: int,
        seed: int | None = None,
        *,
        reject_outside_support: bool = True,
    ) -> PosteriorSamples:
        """Draw ``n_samples`` from the posterior of one observation.

        Args:
            observation: an `EncodedObservation`, the observation's blocks, or the raw
                values of a one-block posterior's block.
            n_samples: number of draws.
            seed: seed of the draws (default: the posterior's ``seed``).
            reject_outside_support: with a bounded prior and ``parameter_space="physical"``,
                reject draws outside the bounds and redraw (the default); ``False``
                returns the raw draws (then counted in ``num_outside_support``).

        Returns:
            `PosteriorSamples` in ``parameter_space``, with ``acceptance_rate``;
            non-finite draws are clamped to large finite values and counted in
            ``num_nonfinite``.

        Raises:
            ValueDomainError: rejection could not find ``n_samples`` draws inside the
                support.
        """
        model = self._require_fitted()
        n = check_positive_int(n_samples, "n_samples")
        seed = self.seed if seed is None else as_int_seed(seed)
        emb = jnp.asarray(self._embedding_of(observation))
        key = jr.key(seed)
        rate = 1.0
        if self._rejects(reject_outside_support):
            draws, rates = self._fill_in_support(
                lambda k: _model.sample_space(model, k, emb, n)[None], n, key
            )
            draws, rate = draws[0], float(rates[0])
            self._warn_acceptance(rate, "sample_posterior")
        else:
            draws = np.asarray(_model.sample_space(model, key, emb, n))
        outside = int(np.sum(~self._in_support(draws)))
        space = self._require_space()
        arr, n_bad = clamp_nonfinite(draws, space)
        return PosteriorSamples(arr, list(self.parameter_names), space, n_bad, seed, rate, outside)

    @in_float32
    def batch_sample_posterior(
        self,
        embeddings: Any,
        n_samples: int,
        base_seed: int = 0,
        *,
        devices: Any = None,
        reject_outside_support: bool = True,
    ) -> np.ndarray:
        """Draw ``n_samples`` for each of a batch of embeddings in one jitted vmapped call.

        Args:
            embeddings: ``(batch, embedding_dim)`` stacked embeddings (or a list of
                `EncodedObservation`).
            n_samples: draws per observation.
            base_seed: observation ``i`` uses the ``i``-th key split from it.
            devices: ``None`` (default placement), ``"all"`` or a sequence of
                ``jax.Device``: the batch axis is split over a 1-D mesh of these
                devices (the model is replicated); results equal one device's.
            reject_outside_support: as in `sample_posterior` (a warning names the
                observations whose acceptance rate is low).

        Returns:
            ``(batch, n_samples, parameter_dim)`` in ``parameter_space``, non-finite
            values clamped.
        """
        model = self._require_fitted()
        n = check_positive_int(n_samples, "n_samples")
        if (
            isinstance(embeddings, (list, tuple))
            and embeddings
            and isinstance(embeddings[0], EncodedObservation)
        ):
            embeddings = np.stack([e.embedding for e in embeddings])
        emb = check_finite(np.asarray(embeddings, np.float32), "embeddings")
        if emb.ndim != 2 or emb.shape[1] != self.embedding_dim:
            raise ShapeError(
                f"embeddings: expected shape (batch, {self.embedding_dim}), got {emb.shape}"
            )
        base = jr.key(as_int_seed(base_seed))
        emb = jnp.asarray(emb)

        def draw(key: jax.Array) -> np.ndarray:
            keys = jr.split(key, emb.shape[0])
            if devices is not None:
                m, (keys_s, emb_s), size = shard_batch(devices, model, keys, emb)
                return gather(_model.batch_sample_space(m, keys_s, emb_s, n))[:size]
            return np.asarray(_model.batch_sample_space(model, keys, emb, n))

        if self._rejects(reject_outside_support):
            draws, rates = self._fill_in_support(draw, n, base)
            low = np.flatnonzero(rates < ACCEPTANCE_WARNING_THRESHOLD)
            if low.size:
                where = f"batch_sample_posterior (observations {low[:10].tolist()})"
                self._warn_acceptance(float(rates.min()), where)
        else:
            draws = draw(base)
        return clamp_nonfinite(draws, self._require_space())[0]

    def _check_parameters(self, parameters: Any) -> tuple[np.ndarray, bool]:
        theta = np.asarray(parameters, np.float64)
        single = theta.ndim == 1
        theta = np.atleast_2d(theta)
        if theta.ndim != 2 or theta.shape[1] != self.parameter_dim:
            raise ShapeError(
                f"parameters: expected shape ({self.parameter_dim},) or (m, {self.parameter_dim}),"
                f" got {np.shape(parameters)}"
            )
        return theta, single

    def _log_prob_space(self, emb: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Log-density over ``parameter_space`` at ``s`` ``(m, d)``.

        -inf outside the support (infinite values included), NaN where ``s`` has a NaN.
        """
        model = self._require_fitted()
        inside = self._in_support(s)
        safe = np.where(inside[:, None], s, self._support_centre()).astype(np.float32)
        out = np.asarray(_model.log_prob_space(model, jnp.asarray(emb), jnp.asarray(safe)))
        return np.where(inside, out, np.where(np.isnan(s).any(axis=-1), np.nan, -np.inf))

    def _support_centre(self) -> np.ndarray:
        space = self._require_space()
        if space.kind == "cube":
            return np.full(self.parameter_dim, 0.5)
        if any(space.log_dims):  # inside a positive prior's support
            return np.where(space.log_dims, np.exp(self._flow_shift), self._flow_shift)
        if space.kind == "unconstrained" or space.lower is None or space.upper is None:
            return np.zeros(self.parameter_dim)
        return 0.5 * (space.lower + space.upper)

    @in_float32
    def log_prob(self, observation: Any, parameters: Any) -> Any:
        """Posterior log-density of one ``(d,)`` or many ``(m, d)`` parameter vectors.

        Parameters are in ``parameter_space`` and the density is with respect to
        that space's coordinates; it is -inf outside the support (outside the unit
        cube in ``"cube"``, outside a bounded prior's box in ``"physical"``, at
        infinite values everywhere). A vector holding a NaN has no density: its
        log_prob is NaN (the NaN propagates, row by row; it is never taken for a
        point outside the support). Returns a float or an ``(m,)`` array.
        """
        self._require_fitted()
        emb = self._embedding_of(observation)
        theta, single = self._check_parameters(parameters)
        out = self._log_prob_space(emb, theta)
        return float(out[0]) if single else out

    @in_float32
    def sample_batch(self, observations: Any, n_samples: int, seed: int = 0) -> np.ndarray:
        """Physical-unit draws for many observations (the diagnostics' sampler).

        Args:
            observations: a sequence of observations (each a list of
                `ObservationBlock`s or an `EncodedObservation`), or an ``(n, k)`` array
                of raw values for a posterior trained on one block.
            n_samples: draws per observation.
            seed: base seed (as ``batch_sample_posterior``'s ``base_seed``).

        Returns:
            ``(n, n_samples, parameter_dim)`` draws in physical units, inside a
            bounded prior's support.
        """
        emb = self._embeddings_of_many(observations)
        draws = self.batch_sample_posterior(emb, n_samples, seed)
        return np.asarray(self._require_space().to_physical(np.asarray(draws, np.float64)))

    @in_float32
    def log_prob_batch(self, observations: Any, parameters: Any) -> np.ndarray:
        """Physical-unit log-densities for many observations (the diagnostics' scorer).

        Args:
            observations: as in `sample_batch`.
            parameters: ``(n, m, parameter_dim)`` parameters in physical units.

        Returns:
            ``(n, m)`` log-densities with respect to physical coordinates, -inf
            outside the support (infinite values included), NaN where a parameter
            vector holds a NaN (as in `log_prob`).
        """
        emb = self._embeddings_of_many(observations)
        theta = np.asarray(parameters, np.float64)
        if (
            theta.ndim != 3
            or theta.shape[0] != emb.shape[0]
            or theta.shape[2] != (self.parameter_dim)
        ):
            raise ShapeError(
                f"parameters: expected shape ({emb.shape[0]}, m, {self.parameter_dim}), "
                f"got {theta.shape}"
            )
        flat = theta.reshape(-1, self.parameter_dim)
        inside = np.all(np.isfinite(flat), axis=-1)
        box = self.diagnostics_support()
        if box is not None:
            inside &= np.all((flat >= box[0]) & (flat <= box[1]), axis=-1)
        safe = np.where(inside[:, None], flat, 0.5 * (box[0] + box[1]) if box else 0.0)
        space = self._require_space()
        s, log_det = space.from_physical_and_log_det(safe)
        s, log_det = np.asarray(s, np.float64), np.asarray(log_det, np.float64)
        if space.kind == "unconstrained":  # a bound itself maps to +-inf: not a density
            inside &= np.all(np.isfinite(s), axis=-1)
            s = np.where(np.isfinite(s), s, 0.0)
        s = s.reshape(theta.shape)
        out = np.stack([self._log_prob_space(e, si) for e, si in zip(emb, s, strict=True)])
        out = out + log_det.reshape(theta.shape[:2])
        outside = np.where(np.isnan(theta).any(axis=-1), np.nan, -np.inf)
        return np.where(inside.reshape(theta.shape[:2]), out, outside)
