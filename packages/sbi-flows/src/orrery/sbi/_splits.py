"""Names both dataset readers share: the batch type, the split and the metadata base.

`orrery.sbi.dataset` (in memory) and `orrery.sbi.streaming` (larger than memory)
both import from here, so neither imports the other's internals: the split drawn
from a seed, the parameter names, the derived bounds, the normalisation scale and
`SplitMetadata`, the split sizes, manifest access and split lookup of both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from orrery.interface import ConfigError, as_numpy_rng, check_choice

from .observations import MODALITIES

__all__ = [
    "BOUNDS_MARGIN",
    "DEFAULT_MEMORY_BUDGET",
    "SPLITS",
    "BatchReader",
    "PosteriorBatch",
    "ReaderSource",
    "SimulationSource",
    "SplitMetadata",
    "as_source",
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


@runtime_checkable
class BatchReader(Protocol):
    """The least a training dataset provides: batches of a split."""

    def iter_batches(
        self, split: str, batch_size: int, *, seed: int = 0, shuffle: bool = True
    ) -> Iterator[PosteriorBatch]: ...


@runtime_checkable
class SimulationSource(BatchReader, Protocol):
    """What `ConditionalFlowPosterior.fit` reads from a dataset.

    `SimulationDataset` (in memory) and `StreamingSimulationDataset` (read in
    windows; ``streaming`` is true) implement it; `ReaderSource` wraps a bare
    `BatchReader`. Metadata a source does not know is ``None``.
    """

    @property
    def streaming(self) -> bool: ...
    @property
    def parameter_names(self) -> list[str] | None: ...
    @property
    def parameter_bounds(self) -> np.ndarray | None: ...
    @property
    def bounds_source(self) -> str: ...
    @property
    def observation_schema(self) -> Mapping[str, Mapping[str, Any]] | None: ...
    @property
    def preprocessing_metadata(self) -> Mapping[str, Mapping[str, Any]] | None: ...
    @property
    def manifest(self) -> Mapping[str, Any] | None: ...
    @property
    def fingerprint(self) -> str | None: ...

    def split_size(self, split: str) -> int: ...
    def read_rows(self, split: str, start: int, stop: int) -> PosteriorBatch: ...
    def parameter_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the training split's parameters."""
        ...


class ReaderSource:
    """A `SimulationSource` over a bare `BatchReader`: its splits read once, in memory.

    The reader's batches (in order, unshuffled) are concatenated per split; the
    metadata is unknown (``None``), so the posterior derives it from the rows.
    """

    streaming = False
    parameter_names = None
    parameter_bounds = None
    bounds_source = "data"
    observation_schema = None
    preprocessing_metadata = None
    manifest = None
    fingerprint = None

    def __init__(self, reader: BatchReader, *, seed: int) -> None:
        self._splits: dict[str, PosteriorBatch | None] = {}
        for split in SPLITS:
            batches = list(reader.iter_batches(split, 4096, seed=seed, shuffle=False))
            self._splits[split] = _concat(batches) if batches else None

    def iter_batches(
        self, split: str, batch_size: int, *, seed: int = 0, shuffle: bool = True
    ) -> Iterator[PosteriorBatch]:
        batch = self._splits[check_choice(split, SPLITS, "split")]
        n = self.split_size(split)
        order = as_numpy_rng(seed).permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            yield _rows(batch, order[start : start + batch_size])

    def split_size(self, split: str) -> int:
        batch = self._splits[check_choice(split, SPLITS, "split")]
        return 0 if batch is None else int(np.shape(batch.parameters)[0])

    def read_rows(self, split: str, start: int, stop: int) -> PosteriorBatch:
        n = self.split_size(split)
        return _rows(self._splits[split], np.arange(start, min(stop, n)))

    def parameter_moments(self) -> tuple[np.ndarray, np.ndarray]:
        theta = np.asarray(self.read_rows("train", 0, self.split_size("train")).parameters)
        theta = theta.astype(np.float64)
        return theta.mean(0), theta.std(0)


def _concat(batches: list[PosteriorBatch]) -> PosteriorBatch:
    params = np.concatenate([np.asarray(b.parameters) for b in batches])
    obs = {
        name: {
            field: np.concatenate([np.asarray(b.observations[name][field]) for b in batches])
            for field in block
        }
        for name, block in batches[0].observations.items()
    }
    return PosteriorBatch(params, obs)


def _rows(batch: PosteriorBatch | None, idx: np.ndarray) -> PosteriorBatch:
    if batch is None:
        raise ConfigError("split: this reader yielded no rows for it")
    obs = {
        name: {f: a[idx] for f, a in block.items()} for name, block in batch.observations.items()
    }
    return PosteriorBatch(np.asarray(batch.parameters)[idx], obs)


def as_source(dataset: object, *, seed: int) -> SimulationSource:
    """``dataset`` itself when it is a `SimulationSource`, a `ReaderSource` over a reader.

    Raises:
        ConfigError: ``dataset`` has no ``iter_batches``.
    """
    if isinstance(dataset, SimulationSource):
        return dataset
    if isinstance(dataset, BatchReader):
        return ReaderSource(dataset, seed=seed)
    raise ConfigError(
        f"dataset: expected a reader with iter_batches(...), got {type(dataset).__name__}"
    )
