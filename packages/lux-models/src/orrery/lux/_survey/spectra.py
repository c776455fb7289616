"""`SpectraStore`, `write_spectra` and `LabelStore` (public through `orrery.lux.survey`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import (
    ArtifactError,
    ConfigError,
    ShapeError,
    ValueDomainError,
    check_positive_int,
)

from .._inference import LabelInference
from .._source import SpectraChunk, SpectraSource
from .chunkstore import ChunkStore, check_dtype

__all__ = ["LabelStore", "LatentStore", "SpectraStore", "write_spectra"]

SPECTRA = "spectra"
LABELS = "labels"
LATENTS = "latents"


class SpectraStore:
    """A survey's spectra on disk, read a range of stars at a time (a `SpectraSource`).

    Open one with ``SpectraStore(path)``; ``write_spectra`` or ``ingest`` make one.
    Every chunk read is checked against the digest recorded when it was written.

    Raises:
        ArtifactError: the path is no finished spectra store, or a chunk is missing,
            truncated, edited or damaged (naming the file).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._store = ChunkStore.open(path, kind=SPECTRA)
        if not self._store.meta.get("complete"):
            raise ArtifactError(
                f"store: {str(self._store.path)!r} is not finished (a write was interrupted): "
                "run the same write_spectra/ingest call again to resume it"
            )
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def n_stars(self) -> int:
        return self._store.n_rows

    @property
    def n_pixels(self) -> int:
        return int(self._store.meta["attrs"]["n_pixels"])

    @property
    def chunk_stars(self) -> int:
        """Stars per chunk on disk (reads aligned to it touch one chunk each)."""
        return self._store.chunk_rows

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._store.meta["arrays"]["flux"]["dtype"])

    @property
    def label_names(self) -> list[str] | None:
        names = self._store.meta["attrs"].get("label_names")
        return None if names is None else list(names)

    @property
    def labels(self) -> np.ndarray | None:
        """Every star's labels ``(n_stars, n_labels)`` (float64), None when the store has none.

        Read from the chunks' label files alone (each checked against its digest),
        so that a fit learns its label scaling without reading the spectra.
        """
        if "labels" not in self._store.meta["arrays"]:
            return None
        return self._store.read_rows(0, self.n_stars, ["labels"])["labels"]

    @property
    def has_ids(self) -> bool:
        return "ids" in self._store.meta["arrays"]

    @property
    def fingerprint(self) -> str:
        """sha256 over every chunk's digest: equal fingerprints, equal contents."""
        return str(self._store.meta["fingerprint"])

    @property
    def wavelength(self) -> np.ndarray | None:
        """The wavelength grid ``(n_pixels,)``, or None when none was stored."""
        return self._store.read_extra("wavelength")

    def read(self, start: int, stop: int) -> SpectraChunk:
        """Rows ``start:stop`` (NumPy arrays, read-only views of the checked chunk bytes)."""
        names = [k for k in ("flux", "ivar", "labels", "ids") if k in self._store.meta["arrays"]]
        size = self._store.chunk_rows
        if 0 <= start < stop <= self.n_stars and start // size == (stop - 1) // size:
            index = start // size  # within one chunk: keep it for the next read
            lo = index * size
            if self._cache is None or self._cache[0] != index:
                self._cache = (index, self._store.read_chunk(index, names))
            got = {k: v[start - lo : stop - lo] for k, v in self._cache[1].items()}
        else:
            got = self._store.read_rows(start, stop, names)
        return SpectraChunk(got["flux"], got["ivar"], got.get("labels"), got.get("ids"))

    def __repr__(self) -> str:
        return (
            f"SpectraStore({str(self.path)!r}, n_stars={self.n_stars}, n_pixels={self.n_pixels}, "
            f"dtype={self.dtype}, labels={self.label_names})"
        )


def _id_dtype(ids: np.ndarray) -> str:
    if ids.dtype.kind in "iu":
        return "<i8"
    if ids.dtype.kind in "USO":
        width = max([len(str(v)) for v in ids.ravel()] + [1])
        return f"<U{max(64, width)}"
    raise ConfigError(f"ids: expected integer or text object ids, got dtype {ids.dtype}")


def _layout(source: SpectraSource, first: SpectraChunk, dtype: Any, label_names):
    flux_dtype = check_dtype(dtype if dtype is not None else first.flux.dtype, "dtype")
    if np.dtype(flux_dtype).kind != "f":
        raise ConfigError(f"dtype: expected float32 or float64, got {np.dtype(flux_dtype)}")
    arrays: dict[str, Any] = {
        "flux": {"dtype": flux_dtype, "shape": [source.n_pixels]},
        "ivar": {"dtype": flux_dtype, "shape": [source.n_pixels]},
    }
    names = None
    if first.labels is not None:
        labels = np.asarray(first.labels)
        if labels.ndim != 2:
            raise ShapeError(f"labels: expected (stars, labels) rows, got shape {labels.shape}")
        names = (
            [f"label{i}" for i in range(labels.shape[1])]
            if label_names is None
            else [str(n) for n in label_names]
        )
        if len(names) != labels.shape[1]:
            raise ShapeError(
                f"label_names: expected {labels.shape[1]} names (the labels' columns), "
                f"got {len(names)}"
            )
        arrays["labels"] = {"dtype": "<f8", "shape": [labels.shape[1]]}
    elif label_names is not None:
        raise ConfigError("label_names: the source has no labels")
    if first.ids is not None:
        arrays["ids"] = {"dtype": _id_dtype(np.asarray(first.ids)), "shape": []}
    return arrays, {"n_pixels": int(source.n_pixels), "label_names": names}


def _checked_rows(chunk: SpectraChunk, start: int, n_pixels: int) -> SpectraChunk:
    n = len(chunk.flux)
    for name, arr in (("flux", chunk.flux), ("ivar", chunk.ivar)):
        if np.shape(arr) != (n, n_pixels):
            raise ShapeError(
                f"{name}: rows {start}..{start + n - 1} have shape {np.shape(arr)}, expected "
                f"({n}, {n_pixels})"
            )
    ivar = np.asarray(chunk.ivar)
    bad = (ivar < 0) | (np.isposinf(ivar) & np.isfinite(chunk.flux))
    if np.any(bad):
        row = start + int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueDomainError(
            f"ivar: row {row} holds a negative or +inf inverse variance (use 0 to mask a pixel)"
        )
    if chunk.labels is not None and not np.all(np.isfinite(np.asarray(chunk.labels, float))):
        row = start + int(np.flatnonzero(~np.isfinite(chunk.labels).all(axis=1))[0])
        raise ValueDomainError(f"labels: row {row} holds a non-finite label")
    return chunk


def write_spectra(
    path: str | os.PathLike[str],
    source: SpectraSource,
    *,
    chunk_stars: int = 1024,
    wavelength: Any = None,
    label_names: Sequence[str] | None = None,
    dtype: Any = None,
    progress: bool = True,
) -> SpectraStore:
    """Write every row of ``source`` into a new store at ``path`` (or resume one).

    Args:
        path: a new or empty folder, or a store an interrupted call with the same
            arguments left (only its missing chunks are written). Anything else is
            refused: nothing is deleted or overwritten that this package did not create.
        source: any `SpectraSource` (an `ArraySource`, a store, ingest's file reader).
        chunk_stars: stars per chunk on disk (the unit of writing, reading, resuming).
        wavelength: the grid ``(n_pixels,)`` stored with the spectra, or None.
        label_names: names of the source's label columns (default ``label0``...).
        dtype: float dtype of flux and ivar on disk (default: the source's).
        progress: show a progress bar (stars/s).

    Returns:
        The finished `SpectraStore`.

    Raises:
        ConfigError: a foreign target, a store made with other arguments, or one
            another process is writing.
        ShapeError: rows of the wrong width, labels or names that disagree.
        ValueDomainError: negative or ``+inf`` inverse variances, non-finite labels.
    """
    if not isinstance(source, SpectraSource):
        raise ConfigError(
            f"source: expected a SpectraSource (n_stars, n_pixels, read), got "
            f"{type(source).__name__}"
        )
    chunk = check_positive_int(chunk_stars, "chunk_stars")
    n = int(source.n_stars)
    if n < 1:
        raise ValueDomainError("source: it holds no stars")
    first = source.read(0, 1)
    arrays, attrs = _layout(source, first, dtype, label_names)
    grid = None
    if wavelength is not None:
        grid = np.asarray(wavelength, dtype=np.float64)
        if grid.shape != (source.n_pixels,):
            raise ShapeError(f"wavelength: expected shape ({source.n_pixels},), got {grid.shape}")
    root = Path(path).expanduser().absolute()
    store = ChunkStore.create_or_resume(root, SPECTRA, n, chunk, arrays, attrs)
    with store.locked():
        if grid is not None:
            found = store.read_extra("wavelength")
            if found is None:
                store.write_extra("wavelength", grid)
            elif not np.array_equal(found, grid):
                raise ConfigError(
                    f"wavelength: the store at {str(root)!r} holds another wavelength grid"
                )
        pending = sorted(set(range(store.n_chunks)) - store.finished())
        _write_pending(store, source, pending, progress)
        store.finalize()
    return SpectraStore(root)


def _write_pending(store: ChunkStore, source: SpectraSource, pending: list[int], progress) -> None:
    from tqdm.auto import tqdm

    n_pixels = int(store.meta["attrs"]["n_pixels"])
    done = store.n_rows - sum(b - a for a, b in map(store.rows_of, pending))
    with tqdm(
        total=store.n_rows, initial=int(done), unit="star", desc="writing", disable=not progress
    ) as bar:
        for index in pending:
            start, stop = store.rows_of(index)
            rows = _checked_rows(source.read(start, stop), start, n_pixels)
            arrays = {"flux": rows.flux, "ivar": rows.ivar}
            if "labels" in store.meta["arrays"]:
                if rows.labels is None:
                    raise ShapeError(f"labels: rows {start}..{stop - 1} have none")
                arrays["labels"] = np.asarray(rows.labels, np.float64)
            if "ids" in store.meta["arrays"]:
                if rows.ids is None:
                    raise ShapeError(f"ids: rows {start}..{stop - 1} have none")
                arrays["ids"] = np.asarray(rows.ids)
                if (
                    arrays["ids"].dtype.kind in "US"
                    and arrays["ids"].dtype.itemsize
                    > np.dtype(store.meta["arrays"]["ids"]["dtype"]).itemsize
                ):
                    raise ConfigError(f"ids: rows {start}..{stop - 1} hold ids longer than 64")
            store.write_chunk(index, arrays)
            bar.update(stop - start)


class LabelStore:
    """A label catalogue written by ``Cannon.infer_labels(source, catalogue=path)``.

    Per star: ``labels`` ``(n, L)``, ``covariance`` ``(n, L, L)``, ``chi2``,
    ``converged``, ``usable`` (the labels are pinned by enough pixels and a
    regular Hessian: finite uncertainties), ``n_pixels_used`` and, when the input
    had them, ``ids``.
    """

    COLUMNS = ("labels", "covariance", "chi2", "converged", "usable", "n_pixels_used")
    KIND = LABELS

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._store = ChunkStore.open(path, kind=self.KIND)
        if not self._store.meta.get("complete"):
            raise ArtifactError(
                f"store: {str(self._store.path)!r} is not finished: run the same "
                "infer_labels call again to resume it"
            )

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def n_stars(self) -> int:
        return self._store.n_rows

    @property
    def label_names(self) -> list[str] | None:
        names = self._store.meta["attrs"].get("label_names")
        return None if names is None else list(names)

    def columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of every column (and ``ids`` when there are any)."""
        stop = self.n_stars if stop is None else stop
        return self._store.read_rows(start, stop, list(self._store.meta["arrays"]))

    def read(self, start: int = 0, stop: int | None = None) -> LabelInference:
        """Rows ``start:stop`` as the `orrery.lux.LabelInference` the in-memory call returns.

        ``Cannon.infer_labels(flux, ivar)`` and ``Cannon.infer_labels(source,
        catalogue=path).read()`` give equal labels, covariances, χ² and convergence
        flags for the same spectra; ``usable`` and ``n_pixels_used`` stay in `columns`.
        """
        if self.KIND != LABELS:
            raise ConfigError(
                f"read: {type(self).__name__} holds no labels; read its columns() instead"
            )
        stop = self.n_stars if stop is None else stop
        names = ["labels", "covariance", "chi2", "converged"]
        got = self._store.read_rows(start, stop, names)
        return LabelInference(*(got[name] for name in names))

    def __getitem__(self, column: str) -> np.ndarray:
        """One column for every star (``store["labels"]``)."""
        if column not in self._store.meta["arrays"]:
            raise KeyError(
                f"{column!r}: the catalogue's columns are {list(self._store.meta['arrays'])}"
            )
        return self._store.read_rows(0, self.n_stars, [column])[column]

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, n_stars={self.n_stars})"


class LatentStore(LabelStore):
    """What `orrery.lux.survey.infer_latents` writes, per object: ``latents`` ``(n, D)``,
    ``covariance`` ``(n, D, D)``, ``chi2``, ``converged``, ``usable``, ``n_pixels_used``,
    ``predicted_<output>`` for each output asked for, and the source's ``ids``.
    Read it with ``columns()`` or ``store["latents"]``.
    """

    COLUMNS = ("latents", "covariance", "chi2", "converged", "usable", "n_pixels_used")
    KIND = LATENTS
