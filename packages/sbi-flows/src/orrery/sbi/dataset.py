"""In-memory simulation datasets: train/validation split, preprocessing and a manifest.

A posterior's ``fit`` reads a dataset only through ``iter_batches`` and a few
metadata attributes (``parameter_names``, ``parameter_bounds``,
``observation_schema``, ``preprocessing_metadata``, ``manifest``,
``fingerprint``); any reader that provides them works (duck typing).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from orrery.interface import (
    ConfigError,
    ShapeError,
    as_numpy_rng,
    check_finite,
    check_nonnegative,
    check_positive_int,
)

from ._preprocess import forward, forward_uncertainties
from ._splits import (  # BOUNDS_MARGIN and SPLITS stay importable from here
    BOUNDS_MARGIN as BOUNDS_MARGIN,
)
from ._splits import (
    DEFAULT_MEMORY_BUDGET,
    PosteriorBatch,
    SplitMetadata,
    derived_bounds,
    resolve_modalities,
    resolve_parameter_names,
    split_indices,
    value_scale,
)
from ._splits import (
    SPLITS as SPLITS,
)
from ._store.row_sources import NpySource, StoreSource
from .streaming import StreamingSimulationDataset

__all__ = ["PosteriorBatch", "SimulationDataset"]


def _as_block_array(value: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected shape (n, k) or (n,), got {arr.shape}")
    if arr.shape[0] != n:
        raise ShapeError(
            f"{name}: expected {n} rows (one per simulation, like parameters), got {arr.shape[0]}"
        )
    return arr


class SimulationDataset(SplitMetadata):
    """Simulated ``(parameters, observations)`` pairs ready for posterior training.

    Build it with `from_arrays`. The validation split is drawn once from
    ``seed``; normalisation statistics (per-feature mean and standard deviation
    of each block's values) come from the training split only.

    Attributes:
        parameters: physical parameters ``(n, d)``.
        observations: ``{block: (n, k)}`` raw values.
        uncertainties: ``{block: (n, k)}`` raw uncertainties, for blocks that have them.
        parameter_names: one name per parameter.
        parameter_bounds: ``(d, 2)`` bounds used by the cube/unconstrained spaces.
        observation_schema: ``{block: {"modality", "size", "has_uncertainties"}}``.
        preprocessing_metadata: ``{block: {"modality", "value_mean", "value_scale"}}``.
        manifest: JSON-safe description, including the content ``fingerprint``.
    """

    #: Read from memory (`orrery.sbi._splits.SimulationSource`).
    streaming = False

    def __init__(
        self,
        parameters: np.ndarray,
        observations: dict[str, np.ndarray],
        uncertainties: dict[str, np.ndarray],
        modalities: dict[str, str],
        parameter_names: list[str],
        parameter_bounds: np.ndarray,
        bounds_source: str,
        train_indices: np.ndarray,
        validation_indices: np.ndarray,
        validation_fraction: float,
        seed: int,
    ) -> None:
        self.parameters = parameters
        self.observations = observations
        self.uncertainties = uncertainties
        self.modalities = modalities
        self.parameter_names = parameter_names
        self.parameter_bounds = parameter_bounds
        self.bounds_source = bounds_source
        self.train_indices = train_indices
        self.validation_indices = validation_indices
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.observation_schema = {
            name: {
                "modality": modalities[name],
                "size": int(arr.shape[1]),
                "has_uncertainties": name in uncertainties,
            }
            for name, arr in observations.items()
        }
        self.preprocessing_metadata = self._fit_preprocessing()
        self.manifest = self._build_manifest()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        parameters: Any,
        observations: Any,
        *,
        modalities: Mapping[str, str] | None = None,
        uncertainties: Mapping[str, Any] | Any | None = None,
        bounds: Any = None,
        parameter_names: Sequence[str] | None = None,
        validation_fraction: float = 0.1,
        seed: int = 0,
    ) -> SimulationDataset:
        """Build a dataset from arrays.

        Args:
            parameters: ``(n, d)`` physical parameters (``(n,)`` for one parameter).
            observations: an array ``(n, k)`` (one block named ``"auxiliary"``) or a
                mapping ``{block name: (n, k)}``.
            modalities: ``{block name: modality}``; a block named after a modality
                defaults to it, any other to ``"auxiliary"``.
            uncertainties: ``{block name: (n, k)}`` non-negative 1-sigma errors (an
                array when ``observations`` is an array).
            bounds: ``(d, 2)`` lower/upper parameter bounds. When omitted they are the
                data range widened by 1% on each side.
            parameter_names: defaults to ``theta[0]`` ... ``theta[d-1]``.
            validation_fraction: share of simulations held out, in ``[0, 1)``.
            seed: seed of the split.

        Returns:
            The dataset.

        Raises:
            ShapeError, ValueDomainError, ConfigError: for inconsistent or bad input.

        Example:
            >>> theta = np.random.default_rng(0).normal(size=(100, 2))
            >>> ds = SimulationDataset.from_arrays(theta, theta + 0.1)
            >>> ds.n_train, ds.n_validation, list(ds.observation_schema)
            (90, 10, ['auxiliary'])
        """
        theta = np.asarray(parameters, dtype=np.float64)
        if theta.ndim == 1:
            theta = theta[:, None]
        if theta.ndim != 2 or theta.shape[0] < 1:
            raise ShapeError(f"parameters: expected shape (n, d), got {theta.shape}")
        check_finite(theta, "parameters")
        n, d = theta.shape

        if isinstance(observations, Mapping):
            obs_in = dict(observations)
            unc_in = dict(uncertainties or {})
        else:
            obs_in = {"auxiliary": observations}
            unc_in = {} if uncertainties is None else {"auxiliary": uncertainties}
        if not obs_in:
            raise ConfigError("observations: expected at least one block")
        obs: dict[str, np.ndarray] = {}
        for name, value in obs_in.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"observations: block names must be non-empty str, got {name!r}")
            obs[name] = check_finite(
                _as_block_array(value, f"observations[{name!r}]", n), f"observations[{name!r}]"
            )
        unc: dict[str, np.ndarray] = {}
        for name, value in unc_in.items():
            if name not in obs:
                raise ConfigError(
                    f"uncertainties: block {name!r} is not an observation block "
                    f"(blocks: {sorted(obs)})"
                )
            arr = _as_block_array(value, f"uncertainties[{name!r}]", n)
            if arr.shape != obs[name].shape:
                raise ShapeError(
                    f"uncertainties[{name!r}]: expected shape {obs[name].shape} like the values, "
                    f"got {arr.shape}"
                )
            unc[name] = check_nonnegative(arr, f"uncertainties[{name!r}]")

        resolved = resolve_modalities(list(obs), modalities)

        names = resolve_parameter_names(parameter_names, d)

        if bounds is None:
            bnds, source = derived_bounds(theta.min(0), theta.max(0)), "derived"
        else:
            bnds = np.asarray(bounds, dtype=np.float64)
            if bnds.shape != (d, 2):
                raise ShapeError(f"bounds: expected shape ({d}, 2), got {bnds.shape}")
            check_finite(bnds, "bounds")
            if np.any(bnds[:, 1] <= bnds[:, 0]):
                raise ConfigError("bounds: every upper bound must exceed its lower bound")
            outside = (theta < bnds[:, 0]) | (theta > bnds[:, 1])
            if outside.any():
                raise ConfigError(
                    f"bounds: {int(outside.sum())} parameter value(s) lie outside the bounds"
                )
            source = "given"

        train_idx, val_idx = split_indices(n, validation_fraction, seed)
        return cls(
            theta,
            obs,
            unc,
            resolved,
            names,
            bnds,
            source,
            train_idx,
            val_idx,
            float(validation_fraction),
            int(seed),
        )

    @classmethod
    def from_store(
        cls,
        path: str | os.PathLike[str],
        *,
        validation_fraction: float = 0.1,
        seed: int = 0,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> StreamingSimulationDataset:
        """Open a finished campaign store (see `orrery.sbi.simulate`) for streaming training.

        Failed simulations are left out (``manifest["excluded_failed"]`` counts them).
        The parameter names, bounds (for a box prior) and modalities come from the store.

        Args:
            path: the store directory returned by ``simulate``.
            validation_fraction: share of simulations held out, in ``[0, 1)``.
            seed: seed of the split (the same split as ``from_arrays`` on the same rows).
            memory_budget: bytes of resident memory the reader may use (windows of
                rows, the background prefetch and cached splits).

        Returns:
            A `StreamingSimulationDataset` with this class's interface.

        Raises:
            ArtifactError: not a store, or an unfinished campaign.
            MissingDependencyError: zarr is not installed (``sbi-flows[store]``).
        """
        source = StoreSource(path)
        cfg = source.config
        return StreamingSimulationDataset(
            source,
            parameter_names=cfg["parameter_names"],
            bounds=cfg["parameter_bounds"],
            modalities=cfg["modalities"],
            validation_fraction=validation_fraction,
            seed=seed,
            memory_budget=memory_budget,
            source_info={"store": str(source.path), "campaign_fingerprint": cfg["fingerprint"]},
        )

    @classmethod
    def from_npy(
        cls,
        parameters: str | os.PathLike[str],
        observations: Mapping[str, str | os.PathLike[str]],
        *,
        modalities: Mapping[str, str] | None = None,
        uncertainties: Mapping[str, str | os.PathLike[str]] | None = None,
        bounds: Any = None,
        parameter_names: Sequence[str] | None = None,
        validation_fraction: float = 0.1,
        seed: int = 0,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> StreamingSimulationDataset:
        """Stream a training set stored as .npy files, opened memory-mapped.

        Same arguments and checks as `from_arrays` (paths instead of arrays), and
        the same guarantees as `from_store`: one streaming pass for statistics,
        windowed shuffled reads with a background prefetch, bounded memory.

        Args:
            parameters: path of an ``(n, d)`` (or ``(n,)``) .npy file.
            observations: ``{block name: path of an (n, k) .npy file}``.
            modalities: ``{block name: modality}`` (as in ``from_arrays``).
            uncertainties: ``{block name: path of an (n, k) .npy file}``.
            bounds: ``(d, 2)`` parameter bounds (default: the data range widened by 1%).
            parameter_names: defaults to ``theta[0]`` ... ``theta[d-1]``.
            validation_fraction: share of simulations held out, in ``[0, 1)``.
            seed: seed of the split.
            memory_budget: bytes of resident memory the reader may use.

        Returns:
            A `StreamingSimulationDataset` with this class's interface.

        Raises:
            ArtifactError: a file is not a readable .npy array.
            ShapeError, ValueDomainError, ConfigError: as ``from_arrays``.
        """
        source = NpySource(parameters, observations, uncertainties)
        return StreamingSimulationDataset(
            source,
            parameter_names=None if parameter_names is None else list(parameter_names),
            bounds=bounds,
            modalities=dict(modalities or {}),
            validation_fraction=validation_fraction,
            seed=seed,
            memory_budget=memory_budget,
            source_info={"npy": os.fspath(parameters)},
        )

    # ------------------------------------------------------------------ metadata
    @property
    def n_simulations(self) -> int:
        return int(self.parameters.shape[0])

    @property
    def parameter_dim(self) -> int:
        return int(self.parameters.shape[1])

    def __repr__(self) -> str:
        return (
            f"SimulationDataset(n={self.n_simulations}, parameter_dim={self.parameter_dim}, "
            f"blocks={self.modalities})"
        )

    def _fit_preprocessing(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, arr in self.observations.items():
            train = arr[self.train_indices]
            mean = train.mean(0)
            scale = value_scale(mean, train.std(0))
            out[name] = {
                "modality": self.modalities[name],
                "value_mean": mean.tolist(),
                "value_scale": scale.tolist(),
            }
        return out

    def _build_manifest(self) -> dict[str, Any]:
        config = self._manifest_config()
        digest = hashlib.sha256()
        digest.update(json.dumps(config, sort_keys=True).encode())
        for label, arr in (
            [("parameters", self.parameters)]
            + [(f"obs:{k}", v) for k, v in sorted(self.observations.items())]
            + [(f"unc:{k}", v) for k, v in sorted(self.uncertainties.items())]
        ):
            digest.update(label.encode())
            digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        digest.update(self.validation_indices.astype(np.int64).tobytes())
        return {
            **config,
            "n_simulations": self.n_simulations,
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "fingerprint": digest.hexdigest(),
        }

    # ------------------------------------------------------------------ batches
    def _batch(self, idx: np.ndarray) -> PosteriorBatch:
        obs = {}
        for name, arr in self.observations.items():
            prep = self.preprocessing_metadata[name]  # transform, centre and scale
            raw = arr[idx]
            block = {"values": forward(raw, prep).astype(np.float32)}
            if name in self.uncertainties:
                sigma = forward_uncertainties(raw, self.uncertainties[name][idx], prep)
                block["uncertainties"] = sigma.astype(np.float32)
            obs[name] = block
        return PosteriorBatch(self.parameters[idx].astype(np.float32), obs)

    def split_arrays(self, split: str) -> PosteriorBatch:
        """The whole split as one `PosteriorBatch` (normalised observations)."""
        return self._batch(self._indices(split))

    def read_rows(self, split: str, start: int, stop: int) -> PosteriorBatch:
        """Positions ``[start, stop)`` of a split as one `PosteriorBatch`."""
        return self._batch(self._indices(split)[start:stop])

    def parameter_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the training parameters (as float32 values)."""
        theta = self.parameters[self.train_indices].astype(np.float32).astype(np.float64)
        return theta.mean(0), theta.std(0)

    def iter_batches(
        self, split: str, batch_size: int, *, seed: int = 0, shuffle: bool = True
    ) -> Iterator[PosteriorBatch]:
        """Yield batches of one split.

        Args:
            split: ``"train"`` or ``"validation"``.
            batch_size: simulations per batch (the last batch may be smaller).
            seed: seed of the shuffle.
            shuffle: whether to shuffle the split's order.

        Yields:
            `PosteriorBatch` with physical parameters and normalised observations.
        """
        idx = self._indices(split)
        batch_size = check_positive_int(batch_size, "batch_size")
        if shuffle:
            idx = idx[as_numpy_rng(seed).permutation(idx.shape[0])]
        for start in range(0, idx.shape[0], batch_size):
            yield self._batch(idx[start : start + batch_size])
