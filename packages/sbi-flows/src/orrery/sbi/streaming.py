"""Training sets larger than memory: `StreamingSimulationDataset`.

Built by `SimulationDataset.from_store` (a campaign store) or
`SimulationDataset.from_npy` (memory-mapped .npy files). It has the metadata of an
in-memory `SimulationDataset` (same split, bounds, schema, preprocessing, manifest
and fingerprint for the same rows) but never holds the rows: statistics come from
one streaming pass, and batches are read window by window with a background
prefetch, so resident memory stays within ``memory_budget`` whatever the data size.

Shuffling: the rows of a split are cut into consecutive windows of
``window_rows`` rows (set by ``memory_budget``); a shuffled pass visits the windows
in a random order and the rows of each window in a random order. When one window
holds the whole split this is the same global permutation as in memory, so the
batches (and a trained posterior) equal the in-memory ones.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from orrery.interface import (
    ConfigError,
    ShapeError,
    ValueDomainError,
    as_numpy_rng,
    check_positive_int,
)

from ._preprocess import forward, forward_uncertainties
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
from ._store import host_buffers as _host_buffers
from ._store.prefetch import prefetch

__all__ = ["DEFAULT_MEMORY_BUDGET", "StreamingSimulationDataset"]

# A window of float32 rows may exist this many times at once: the group being read
# (its rows, and float64 read temporaries of up to a window in pieces of a quarter
# window), its device copy, one waiting in the prefetch queue and two being trained
# on (one step group runs while the next is dispatched), plus one of margin.
_WINDOW_COPIES = 7
_PIECES_PER_WINDOW = 4


class _Moments:
    """Per-column mean and variance merged over row pieces (Chan et al.)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        m = x.shape[0]
        if m == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = m, mean_b, m2_b
            return
        total = self.n + m
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (m / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * m / total)
        self.n = total

    def mean_and_std(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the rows added (``what`` names them)."""
        if self.mean is None or self.m2 is None:
            raise ValueDomainError(f"{what}: no training rows to take moments of")
        return self.mean, np.sqrt(self.m2 / self.n)


class StreamingSimulationDataset(SplitMetadata):
    """A simulation dataset read from disk in windows (same interface as `SimulationDataset`).

    Do not build it directly: use `SimulationDataset.from_store` or
    `SimulationDataset.from_npy`.

    Attributes:
        parameter_names: one name per parameter.
        parameter_bounds: ``(d, 2)`` bounds (given, or the data range widened by 1%).
        observation_schema: ``{block: {"modality", "size", "has_uncertainties"}}``.
        preprocessing_metadata: ``{block: {"modality", "value_mean", "value_scale"}}``
            from the training split.
        manifest: as for an in-memory dataset of the same rows (same ``fingerprint``),
            plus ``"excluded_failed"`` (failed simulations left out) and ``"source"``.
        window_rows: rows per read window, from ``memory_budget``.
        memory_budget: the resident-memory budget in bytes.
    """

    streaming = True

    def __init__(
        self,
        source: Any,
        *,
        parameter_names: list[str] | None,
        bounds: Any,
        modalities: dict[str, str] | None,
        validation_fraction: float,
        seed: int,
        memory_budget: int,
        source_info: dict[str, Any],
    ) -> None:
        self._source = source
        n, d = source.n_rows, source.parameter_dim
        if n < 1:
            raise ConfigError("dataset: the source holds no successful simulation")
        self.memory_budget = check_positive_int(memory_budget, "memory_budget")
        self.seed = int(seed)
        self.validation_fraction = float(validation_fraction)
        self.train_indices, self.validation_indices = split_indices(n, validation_fraction, seed)
        self._n = n
        self._d = d
        self.modalities = resolve_modalities(list(source.blocks), modalities)
        self.parameter_names = resolve_parameter_names(parameter_names, d)
        widths = d + sum(source.blocks.values()) + sum(source.uncertainty_blocks.values())
        self._row_bytes = 4 * widths
        # a store array not in the plain layout is read a whole chunk at a time (Zarr)
        reserved = getattr(source, "chunk_bytes", 0)
        if self.memory_budget < 2 * reserved:
            raise ConfigError(
                f"memory_budget: {self.memory_budget} bytes is too small for this store, whose "
                f"chunks take {reserved} bytes each: give at least {2 * reserved}"
            )
        usable = self.memory_budget - reserved
        self.window_rows = max(1, usable // (_WINDOW_COPIES * self._row_bytes))
        self._piece = max(1, self.window_rows // _PIECES_PER_WINDOW)
        self.observation_schema = {
            name: {
                "modality": self.modalities[name],
                "size": int(size),
                "has_uncertainties": name in source.uncertainty_blocks,
            }
            for name, size in source.blocks.items()
        }
        self._scratch = _host_buffers.Scratch()
        self._read_lock = threading.Lock()
        self._is_train = np.zeros(n, dtype=bool)
        self._is_train[self.train_indices] = True
        self._scan(bounds, source_info)

    # ------------------------------------------------------------------ one streaming pass
    def _pieces(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self._n, self._piece):
            yield start, min(start + self._piece, self._n)

    def _scan(self, bounds: Any, source_info: dict[str, Any]) -> None:
        src = self._source
        lo = np.full(self._d, np.inf)
        hi = np.full(self._d, -np.inf)
        theta_moments = _Moments()
        for a, b in self._pieces():
            theta = src.read("parameters", a, b)
            if not np.isfinite(theta).all():
                raise ValueDomainError("parameters: contains NaN or inf")
            lo, hi = np.minimum(lo, theta.min(0)), np.maximum(hi, theta.max(0))
            # the in-memory fit sees float32 parameters: take moments of the same values
            theta_moments.add(theta[self._is_train[a:b]].astype(np.float32).astype(np.float64))
        self._theta_mean, self._theta_std = theta_moments.mean_and_std("parameters")
        if bounds is None:
            self.parameter_bounds, self.bounds_source = derived_bounds(lo, hi), "derived"
        else:
            bnds = np.asarray(bounds, dtype=np.float64)
            if bnds.shape != (self._d, 2) or not np.isfinite(bnds).all():
                raise ConfigError(f"bounds: expected finite shape ({self._d}, 2), got {bnds.shape}")
            if np.any(bnds[:, 1] <= bnds[:, 0]):
                raise ConfigError("bounds: every upper bound must exceed its lower bound")
            if np.any(lo < bnds[:, 0]) or np.any(hi > bnds[:, 1]):
                raise ConfigError("bounds: some parameter values lie outside the bounds")
            self.parameter_bounds, self.bounds_source = bnds, "given"
        config = self._manifest_config()
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        fields = (
            ["parameters"]
            + [f"obs:{k}" for k in sorted(src.blocks)]
            + [f"unc:{k}" for k in sorted(src.uncertainty_blocks)]
        )
        self.preprocessing_metadata = {}
        for field in fields:
            digest.update(field.encode())
            moments = _Moments()
            for a, b in self._pieces():
                x = src.read(field, a, b)
                if not np.isfinite(x).all():
                    raise ValueDomainError(f"{_label(field)}: contains NaN or inf")
                if field.startswith("unc:") and (x < 0).any():
                    raise ValueDomainError(f"{_label(field)}: expected non-negative values")
                digest.update(np.ascontiguousarray(x).tobytes())
                if field.startswith("obs:"):
                    moments.add(x[self._is_train[a:b]])
            if field.startswith("obs:"):
                mean, std = moments.mean_and_std(_label(field))
                scale = value_scale(mean, std)
                self.preprocessing_metadata[field[4:]] = {
                    "modality": self.modalities[field[4:]],
                    "value_mean": mean.tolist(),
                    "value_scale": scale.tolist(),
                }
        self.preprocessing_metadata = {
            k: self.preprocessing_metadata[k] for k in self.observation_schema
        }
        digest.update(self.validation_indices.astype(np.int64).tobytes())
        self.manifest = {
            **config,
            "n_simulations": self._n,
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "fingerprint": digest.hexdigest(),
            "excluded_failed": int(self._source.n_failed),
            "source": source_info,
        }
        self._norm = {
            k: (np.asarray(v["value_mean"]), np.asarray(v["value_scale"]))
            for k, v in self.preprocessing_metadata.items()
        }

    # ------------------------------------------------------------------ metadata
    @property
    def n_simulations(self) -> int:
        return self._n

    @property
    def parameter_dim(self) -> int:
        return self._d

    def __repr__(self) -> str:
        return (
            f"StreamingSimulationDataset(n={self._n}, parameter_dim={self._d}, "
            f"blocks={self.modalities}, window_rows={self.window_rows})"
        )

    def parameter_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the training parameters (as float32 values)."""
        return self._theta_mean.copy(), self._theta_std.copy()

    # ------------------------------------------------------------------ reading
    def read_rows(self, split: str, start: int, stop: int) -> PosteriorBatch:
        """Positions ``[start, stop)`` of a split, normalised like the in-memory batches."""
        self._indices(split)
        return self.read_positions(split, np.arange(start, min(stop, self.split_size(split))))

    def read_positions(self, split: str, positions: Any) -> PosteriorBatch:
        """The given positions of a split, in that order, normalised like `read_rows`.

        Only these rows are read from the source (in pieces of a quarter window).

        Args:
            split: ``"train"`` or ``"validation"``.
            positions: 1-D integer positions in ``[0, split_size(split))``.

        Returns:
            `PosteriorBatch` of ``len(positions)`` rows.

        Raises:
            ShapeError: ``positions`` is not 1-D.
            ValueDomainError: a position outside the split.
        """
        indices = self._indices(split)
        positions = np.asarray(positions, dtype=np.int64)
        if positions.ndim != 1:
            raise ShapeError(f"positions: expected a 1-D array, got shape {positions.shape}")
        if positions.size and (positions.min() < 0 or positions.max() >= indices.shape[0]):
            raise ValueDomainError(
                f"positions: expected values in [0, {indices.shape[0]}) for split {split!r}"
            )
        m = positions.shape[0]
        theta = np.empty((m, self._d), dtype=np.float32)
        obs = {
            k: {"values": _host_buffers.empty((m, size), np.float32)}
            for k, size in self._source.blocks.items()
        }
        for k, size in self._source.uncertainty_blocks.items():
            obs[k]["uncertainties"] = _host_buffers.empty((m, size), np.float32)
        order = np.argsort(positions, kind="stable")
        rows = indices[positions[order]]
        with self._read_lock:  # one reader at a time: they share the work buffers
            for lo in range(0, m, self._piece):
                dest = order[lo : lo + self._piece]
                sel = rows[lo : lo + self._piece]
                theta[dest] = self._source.take("parameters", sel)
                for k, block in obs.items():
                    if "transform" in self.preprocessing_metadata[k]:  # chosen by a posterior
                        self._transformed_rows(k, sel, dest, block)
                        continue
                    mean, scale = self._norm[k]
                    for kind, field in (("values", "obs"), ("uncertainties", "unc")):
                        if kind not in block:
                            continue
                        x = self._scratch.get("rows", (sel.shape[0], mean.shape[0]), np.float64)
                        self._source.take(f"{field}:{k}", sel, out=x)
                        if kind == "values":
                            x -= mean  # in place, the same float64 operations as in memory
                        x /= scale
                        block[kind][dest] = x
        return PosteriorBatch(theta, obs)

    def _transformed_rows(self, k: str, sel: np.ndarray, dest: np.ndarray, block: dict) -> None:
        """Rows ``sel`` of block ``k`` through its recorded transform (`_preprocess.forward`)."""
        entry = self.preprocessing_metadata[k]
        raw = self._source.take(f"obs:{k}", sel)
        block["values"][dest] = forward(raw, entry)
        if "uncertainties" in block:
            sigma = self._source.take(f"unc:{k}", sel)
            block["uncertainties"][dest] = forward_uncertainties(raw, sigma, entry)

    def check_source(self) -> None:
        """Check the source before a pass over it (``ArtifactError`` when it changed).

        A store's chunks whose files changed since they were verified are verified
        again (unchanged ones cost a ``stat``); a .npy file must still hold every byte
        its mapping needs (a truncated file would otherwise kill the process).
        """
        check = getattr(self._source, "check", None)
        if check is not None:
            check()

    def window_order(self, n: int, window: int, rng: np.random.Generator):
        """Windows ``(start, stop)`` of a shuffled pass and each one's row order."""
        starts = np.arange(0, n, window)
        for w in rng.permutation(starts.shape[0]):
            a = int(starts[w])
            b = min(a + window, n)
            yield a, b, rng.permutation(b - a)

    def iter_batches(
        self, split: str, batch_size: int, *, seed: int = 0, shuffle: bool = True
    ) -> Iterator[PosteriorBatch]:
        """Yield batches of one split, read window by window in a background thread.

        Args:
            split: ``"train"`` or ``"validation"``.
            batch_size: simulations per batch (the last batch may be smaller).
            seed: seed of the shuffle.
            shuffle: visit windows, and rows within each window, in random order.
                With one window this is the in-memory dataset's order.

        Yields:
            `PosteriorBatch` with physical parameters and normalised observations.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        n = self.split_size(split)
        self.check_source()
        window = max(self.window_rows, 1)
        if shuffle:
            if window >= n:
                order = [(0, n, as_numpy_rng(seed).permutation(n))]
            else:
                order = list(self.window_order(n, window, as_numpy_rng(seed)))
        else:
            order = [(a, min(a + window, n), None) for a in range(0, n, window)]

        def load() -> Iterator[PosteriorBatch]:
            for a, b, perm in order:
                data = self.read_rows(split, a, b)
                yield data if perm is None else _take(data, perm)

        carry: PosteriorBatch | None = None
        for data in prefetch(load):
            if carry is not None:
                data = _concat(carry, data)
            m = data.parameters.shape[0]
            full = m - m % batch_size
            for s in range(0, full, batch_size):
                yield _take(data, slice(s, s + batch_size))
            carry = _take(data, slice(full, m)) if full < m else None
        if carry is not None:
            yield carry


def _label(field: str) -> str:
    if field == "parameters":
        return "parameters"
    kind, name = field.split(":", 1)
    return f"{'observations' if kind == 'obs' else 'uncertainties'}[{name!r}]"


def _take(batch: PosteriorBatch, idx: Any) -> PosteriorBatch:
    return PosteriorBatch(
        batch.parameters[idx],
        {k: {f: a[idx] for f, a in v.items()} for k, v in batch.observations.items()},
    )


def _concat(a: PosteriorBatch, b: PosteriorBatch) -> PosteriorBatch:
    return PosteriorBatch(
        np.concatenate([a.parameters, b.parameters]),
        {
            k: {f: np.concatenate([v[f], b.observations[k][f]]) for f in v}
            for k, v in a.observations.items()
        },
    )
