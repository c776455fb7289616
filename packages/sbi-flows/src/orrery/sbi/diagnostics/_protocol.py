"""Duck-typed access to posterior samples and densities for the diagnostics.

A *posterior* for the diagnostics is any object offering one of these sampling
methods, tried in this order:

1. ``sample_batch(observations, n_samples, seed) -> (n, S, dim)``;
2. ``batch_sample_posterior(embeddings, n_samples, base_seed) -> (n, S, dim)`` (the
   estimator's batched sampler; a sequence of objects with an ``embedding``
   attribute is stacked into an ``(n, embedding_dim)`` array first);
3. ``sample_posterior(observation, n_samples, seed) -> (S, dim)`` called once per
   observation with its own seed (`observation_seeds`: drawn from keys split
   from ``seed``'s key); a result with a ``samples`` attribute is unwrapped.

and optionally, for densities, ``log_prob_batch(observations, parameters (n, S, dim))
-> (n, S)`` or ``log_prob(observation, parameters (S, dim)) -> (S,)``.

Samples, densities and the true parameters handed to a diagnostic must live in the
same coordinates. A `ConditionalFlowPosterior` offers ``sample_batch`` and
``log_prob_batch`` in **physical units** (its ``diagnostics_space``), whatever its
``parameter_space``: give it the true parameters as simulated and the observations
as you have them (a list of observations, each a list of `ObservationBlock`s or an
`EncodedObservation`, or an ``(n, k)`` array of raw values for a one-block
posterior); the diagnostics map them internally and report ``space="physical"``.
For any other posterior the results are in the coordinates its samples use
(``space="as given"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from orrery.interface import ShapeError


def _as_array(result: Any) -> np.ndarray:
    if hasattr(result, "samples"):
        result = result.samples
    return np.asarray(result, dtype=np.float64)


def _unstack(observations: Any) -> Sequence[Any]:
    if isinstance(observations, Sequence) and not isinstance(observations, str):
        return observations
    return [observations[i] for i in range(len(observations))]


def observation_seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds in ``[0, 2**31)``, one per observation, from keys split from ``seed``'s.

    A stream per observation, not ``seed + i``: with that, observation 1 of seed 0
    drew the same samples as observation 0 of seed 1.
    """
    if n == 0:
        return []
    keys = jax.random.split(jax.random.key(seed), n)
    bits = np.asarray(jax.vmap(lambda k: jax.random.bits(k, dtype=np.uint32))(keys))
    return [int(b) >> 1 for b in bits]


def result_space(posterior: Any) -> str:
    """The space a diagnostic's truths, draws and densities are in (see the module docstring)."""
    space = getattr(posterior, "diagnostics_space", None)
    return space if isinstance(space, str) else "as given"


def num_observations(observations: Any) -> int:
    return len(observations)


def draw_samples(posterior: Any, observations: Any, n_samples: int, seed: int) -> np.ndarray:
    """Posterior samples ``(n, n_samples, dim)`` for every observation."""
    if hasattr(posterior, "sample_batch"):
        samples = _as_array(posterior.sample_batch(observations, n_samples, seed))
    elif hasattr(posterior, "batch_sample_posterior"):
        embeddings = observations
        if isinstance(observations, Sequence) and all(
            hasattr(o, "embedding") for o in observations
        ):
            embeddings = np.stack([np.asarray(o.embedding) for o in observations])
        samples = _as_array(posterior.batch_sample_posterior(embeddings, n_samples, seed))
    elif hasattr(posterior, "sample_posterior"):
        each = _unstack(observations)
        seeds = observation_seeds(seed, len(each))
        samples = np.stack(
            [
                _as_array(posterior.sample_posterior(obs, n_samples, s))
                for s, obs in zip(seeds, each, strict=True)
            ]
        )
    else:
        raise TypeError(
            "posterior must provide sample_batch(observations, n_samples, seed), "
            "batch_sample_posterior(embeddings, n_samples, base_seed) or "
            f"sample_posterior(observation, n_samples, seed); got {type(posterior).__name__}"
        )
    if samples.ndim == 2:  # one-dimensional parameter returned without its axis
        samples = samples[..., None]
    if samples.ndim != 3 or samples.shape[1] != n_samples:
        raise ShapeError(
            f"posterior samples must have shape (n, {n_samples}, dim); got {samples.shape}"
        )
    return samples


def has_log_prob(posterior: Any) -> bool:
    return hasattr(posterior, "log_prob_batch") or hasattr(posterior, "log_prob")


def log_probs(posterior: Any, observations: Any, parameters: np.ndarray) -> np.ndarray:
    """Log-densities ``(n, S)`` of ``parameters`` ``(n, S, dim)`` under each posterior."""
    if hasattr(posterior, "log_prob_batch"):
        out = np.asarray(posterior.log_prob_batch(observations, parameters), dtype=np.float64)
    else:
        out = np.stack(
            [
                np.asarray(posterior.log_prob(obs, parameters[i]), dtype=np.float64).reshape(-1)
                for i, obs in enumerate(_unstack(observations))
            ]
        )
    if out.shape != parameters.shape[:2]:
        raise ShapeError(f"log-probs must have shape {parameters.shape[:2]}; got {out.shape}")
    return out
