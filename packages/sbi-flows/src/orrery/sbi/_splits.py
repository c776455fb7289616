"""Names both dataset readers share: the batch type, the split and the metadata base.

`orrery.sbi.dataset` (in memory) and `orrery.sbi.streaming` (larger than memory)
both import from here, so neither imports the other's internals: the split drawn
from a seed, the parameter names, the derived bounds, the normalisation scale and
`SplitMetadata`, the split sizes, manifest access and split lookup of both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from orrery.interface import ConfigError, as_numpy_rng, check_choice

from .observations import MODALITIES

__all__ = [
    "BOUNDS_MARGIN",
    "DEFAULT_MEMORY_BUDGET",
    "SPLITS",
    "PosteriorBatch",
    "SplitMetadata",
    "derived_bounds",
    "resolve_modalities",
    "resolve_parameter_names",
    "split_indices",
    "value_scale",
]

SPLITS: tuple[str, ...] = ("train", "validation")
#: Fraction of the parameter range added on each side when bounds are derived from data.
BOUNDS_MARGIN = 0.01
#: Default resident-memory budget of a streaming dataset, in bytes (256 MiB).
DEFAULT_MEMORY_BUDGET = 256 * 2**20


class PosteriorBatch(NamedTuple):
    """One batch of simulations (a pytree: it can be passed through ``jax.jit``).

    Attributes:
        parameters: physical parameters ``(b, d)``.
        observations: ``{block name: {"values": (b, k), "uncertainties": (b, k)}}``,
            normalised with the dataset's preprocessing; ``"uncertainties"`` is
            present only for blocks that have them.
    """

    parameters: Any
    observations: dict[str, dict[str, Any]]


def resolve_modalities(blocks: list[str], modalities: Mapping[str, str] | None) -> dict[str, str]:
    """``{block: modality}``: given ones checked, others named after a modality or auxiliary."""
    mods = dict(modalities or {})
    for name in mods:
        if name not in blocks:
            raise ConfigError(
                f"modalities: block {name!r} is not an observation block (blocks: {sorted(blocks)})"
            )
    resolved = {}
    for name in blocks:
        default = name if name in MODALITIES else "auxiliary"
        resolved[name] = check_choice(mods.get(name, default), MODALITIES, f"modalities[{name!r}]")
    return resolved


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, validation)`` row indices of the split drawn from ``seed``."""
    if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
        raise ConfigError(
            f"validation_fraction: expected a number in [0, 1), got {validation_fraction!r}"
        )
    n_val = round(n * validation_fraction)
    if validation_fraction > 0:
        n_val = max(n_val, 1)
    if n - n_val < 1:
        raise ConfigError(f"validation_fraction={validation_fraction} leaves no training data")
    perm = as_numpy_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def resolve_parameter_names(parameter_names: Sequence[str] | None, d: int) -> list[str]:
    """``d`` distinct names (``theta[i]`` by default); ``ConfigError`` otherwise."""
    if parameter_names is None:
        return [f"theta[{i}]" for i in range(d)]
    names = [str(p) for p in parameter_names]
    if len(names) != d or len(set(names)) != d:
        raise ConfigError(
            f"parameter_names: expected {d} distinct names, got {list(parameter_names)!r}"
        )
    return names


def derived_bounds(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(d, 2)`` bounds: the data range ``[lo, hi]`` widened by `BOUNDS_MARGIN` each side."""
    pad = BOUNDS_MARGIN * np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    return np.stack([lo - pad, hi + pad], axis=1)


def value_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The normalisation scale: the standard deviation, 1 for a constant feature."""
    return np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)


class SplitMetadata:
    """Split sizes, manifest access and split lookup shared by the dataset readers.

    A subclass sets ``train_indices``, ``validation_indices``, ``manifest`` and the
    configuration attributes, and defines ``n_simulations``.
    """

    train_indices: np.ndarray
    validation_indices: np.ndarray
    manifest: dict[str, Any]

    @property
    def n_simulations(self) -> int:
        raise NotImplementedError

    @property
    def n_train(self) -> int:
        return int(self.train_indices.shape[0])

    @property
    def n_validation(self) -> int:
        return int(self.validation_indices.shape[0])

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the rows and the configuration (split, bounds, names, modalities)."""
        return self.manifest["fingerprint"]

    def __len__(self) -> int:
        return self.n_simulations

    def split_size(self, split: str) -> int:
        """Rows in ``split`` (``"train"`` or ``"validation"``)."""
        return int(self._indices(split).shape[0])

    def _indices(self, split: str) -> np.ndarray:
        check_choice(split, SPLITS, "split")
        return self.train_indices if split == "train" else self.validation_indices

    def _manifest_config(self) -> dict[str, Any]:
        """The configuration part of the manifest (hashed first into the fingerprint)."""
        return {
            "parameter_names": self.parameter_names,  # type: ignore[attr-defined]
            "parameter_bounds": self.parameter_bounds.tolist(),  # type: ignore[attr-defined]
            "bounds_source": self.bounds_source,  # type: ignore[attr-defined]
            "observation_schema": self.observation_schema,  # type: ignore[attr-defined]
            "validation_fraction": self.validation_fraction,  # type: ignore[attr-defined]
            "seed": self.seed,  # type: ignore[attr-defined]
        }
