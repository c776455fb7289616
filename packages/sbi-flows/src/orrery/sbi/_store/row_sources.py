"""Row sources for the streaming dataset: a campaign store and memory-mapped .npy files.

A source exposes ``n_rows``, ``parameter_dim``, ``blocks`` (``{name: size}``),
``uncertainty_blocks``, ``read(field, start, stop) -> float64 (m, k)`` (rows in
order) and ``take(field, rows) -> float64 (m, k)`` (given sorted rows only) for
fields ``"parameters"``, ``"obs:<block>"`` and ``"unc:<block>"``.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import ArtifactError, ConfigError, ShapeError

from . import host_buffers as _host_buffers
from . import read as _store_read
from . import write as _store


class StoreSource:
    """The successful rows of a finished campaign store, in campaign order.

    Opening it verifies every chunk (see `orrery.sbi._store.read`: digests, layout,
    counts, the campaign fingerprint), once per process. Chunk arrays are plain
    little-endian bytes in one file each: a read takes only the span of rows asked
    for, in one ``pread``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self.config = _store.read_config(self.path)
        if not self.config.get("complete"):
            raise ArtifactError(
                f"store {str(self.path)!r} is not complete: run simulate(...) on it again to "
                "finish the missing chunks"
            )
        self._chunks = _store_read.verify_store(self.path, self.config)
        # positions of the successful rows inside each chunk (None: every row)
        self._ok_rows: list[np.ndarray | None] = [
            None if c.ok.all() else np.flatnonzero(c.ok).astype(np.int32) for c in self._chunks
        ]
        counts = np.array([int(c.ok.sum()) for c in self._chunks], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.n_rows = int(self._offsets[-1])
        self.n_failed = int(self.config["n_failed"])
        self.parameter_dim = len(self.config["parameter_names"])
        self.blocks = {k: int(v["size"]) for k, v in self.config["blocks"].items()}
        self.uncertainty_blocks: dict[str, int] = {}
        widths = self.parameter_dim + 1 + sum(self.blocks.values())
        #: bytes of one chunk of every array in memory (as float64)
        self.chunk_bytes = 8 * widths * int(self.config["chunk_size"])
        self._scratch = _host_buffers.Scratch()

    def check(self) -> None:
        """Check the store again before a pass over it (one ``stat`` per data file).

        A chunk whose data files changed since it was verified is verified again:
        an edit is an `ArtifactError`, never rows read from a changed file.
        """
        for index, chunk in enumerate(self._chunks):
            if all(layout.unchanged() for layout in chunk.arrays.values()):
                continue
            again = _store_read.verified_chunk(self.path, index, self.config, self.config["blocks"])
            if again.digest != chunk.digest:  # cannot happen: the digest is recorded
                raise ArtifactError(f"store: chunk {index} changed since it was opened")
            self._chunks[index] = again

    def _field(self, field: str) -> tuple[str, int]:
        if field == "parameters":
            return "parameters", self.parameter_dim
        name = field.split(":", 1)[1]
        return f"obs/{name}", self.blocks[name]

    def _gather(self, name: str, chunk: int, raw: np.ndarray, out: np.ndarray) -> None:
        """Copy rows ``raw`` (chunk-local, sorted) of one chunk array into ``out``."""
        layout = self._chunks[chunk].arrays[name]
        if layout.file is None:  # an array of its fill value only
            out[...] = layout.fill
            return
        first, stop = int(raw[0]), int(raw[-1]) + 1
        row = layout.dtype.itemsize * int(np.prod(layout.shape[1:]))
        span = self._scratch.get("span", (stop - first, *layout.shape[1:]), layout.dtype)
        fd = os.open(layout.file, os.O_RDONLY)
        try:
            got = os.preadv(fd, [span.data.cast("B")], first * row)
        finally:
            os.close(fd)
        if got != span.nbytes:
            raise ArtifactError(
                f"store: chunk {chunk} {name}: short read of {layout.file!r} (changed after "
                "it was verified?)"
            )
        if span.dtype == out.dtype:
            np.take(span, raw - first, axis=0, out=out, mode="clip")  # in range
        else:
            out[...] = span[raw - first]

    def take(self, field: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The given rows (sorted, in ``[0, n_rows)``) of one field, as float64.

        ``out``: a float64 ``(len(rows), width)`` array to fill (else a new one).
        """
        name, width = self._field(field)
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((rows.shape[0], width), dtype=np.float64)
        if rows.shape[0] == 0:
            return out
        chunks = np.searchsorted(self._offsets, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(chunks)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, rows.shape[0]], strict=True):
            chunk = int(chunks[lo])
            raw = rows[lo:hi] - self._offsets[chunk]
            ok_rows = self._ok_rows[chunk]
            if ok_rows is not None:
                raw = ok_rows[raw]
            self._gather(name, chunk, raw, out[lo:hi])
        return out

    def read(self, field: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of one field, as float64."""
        return self.take(field, np.arange(start, stop, dtype=np.int64))


class NpySource:
    """Training arrays given as .npy files, opened memory-mapped (never read whole).

    After each read the mapped pages are released from the process
    (``madvise(MADV_DONTNEED)``; they stay in the page cache), so reading the whole
    file does not grow the resident set.
    """

    def __init__(
        self,
        parameters: str | os.PathLike[str],
        observations: Mapping[str, str | os.PathLike[str]],
        uncertainties: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        #: per field: (file, bytes the mapping needs), checked before every read
        self._needs: dict[str, tuple[str, int]] = {}
        self._arrays: dict[str, np.ndarray] = {
            "parameters": self._open(parameters, "parameters", self._needs, "parameters")
        }
        n = self._arrays["parameters"].shape[0]
        if not isinstance(observations, Mapping) or not observations:
            raise ConfigError(
                "observations: expected a non-empty mapping {block name: path to .npy}"
            )
        for label, files in (("obs", observations), ("unc", uncertainties or {})):
            for name, file in files.items():
                if label == "unc" and name not in observations:
                    raise ConfigError(
                        f"uncertainties: block {name!r} is not an observation block "
                        f"(blocks: {sorted(observations)})"
                    )
                arr = self._open(
                    file,
                    f"{'observations' if label == 'obs' else 'uncertainties'}[{name!r}]",
                    self._needs,
                    f"{label}:{name}",
                )
                if arr.shape[0] != n:
                    raise ShapeError(
                        f"{file}: expected {n} rows (one per simulation, like parameters), "
                        f"got {arr.shape[0]}"
                    )
                self._arrays[f"{label}:{name}"] = arr
        for name in uncertainties or {}:
            if self._arrays[f"unc:{name}"].shape != self._arrays[f"obs:{name}"].shape:
                raise ShapeError(
                    f"uncertainties[{name!r}]: expected the shape of the values, "
                    f"{self._arrays[f'obs:{name}'].shape}, got "
                    f"{self._arrays[f'unc:{name}'].shape}"
                )
        self.n_rows = int(n)
        self.n_failed = 0
        self.parameter_dim = int(self._arrays["parameters"].shape[1])
        self.blocks = {str(k): int(self._arrays[f"obs:{k}"].shape[1]) for k in observations}
        self.uncertainty_blocks = {
            str(k): int(self._arrays[f"unc:{k}"].shape[1]) for k in (uncertainties or {})
        }

    @staticmethod
    def _open(file: Any, name: str, needs: dict[str, tuple[str, int]], field: str) -> np.ndarray:
        try:
            arr = np.load(os.fspath(file), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ArtifactError(f"{name}: cannot open {file!r} as a .npy array ({err})") from err
        if isinstance(arr, np.memmap):
            needs[field] = (os.fspath(file), int(arr.offset) + int(arr.nbytes))
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise ShapeError(f"{name}: expected shape (n, k) or (n,), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ShapeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
        return arr

    def check(self, fields: Any = None) -> None:
        """Every mapped file still holds the bytes its mapping needs (``ArtifactError``).

        Reading a mapped page past the end of a file truncated after it was opened
        kills the process (SIGBUS): sizes are checked before every read instead.
        """
        for field in self._needs if fields is None else fields:
            if field not in self._needs:
                continue
            file, needed = self._needs[field]
            try:
                size = os.stat(file).st_size
            except OSError as err:
                raise ArtifactError(f"{file!r}: cannot be read any more ({err!r})") from err
            if size < needed:
                raise ArtifactError(
                    f"{file!r} holds {size} bytes, {needed} are needed: it was truncated "
                    "after from_npy opened it; open the dataset again from complete files"
                )

    def read(self, field: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of one field, as float64."""
        self.check((field,))
        arr = self._arrays[field]
        return self._release(arr, np.array(arr[start:stop], dtype=np.float64))

    def take(self, field: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The given rows (sorted) of one field, as float64 (into ``out`` if given)."""
        self.check((field,))
        arr = self._arrays[field]
        if out is None:
            return self._release(arr, np.asarray(arr[np.asarray(rows)], dtype=np.float64))
        out[...] = arr[np.asarray(rows)]
        return self._release(arr, out)

    @staticmethod
    def _release(arr: np.ndarray, out: np.ndarray) -> np.ndarray:
        base = arr
        while base is not None and not isinstance(base, np.memmap):
            base = base.base
        handle = getattr(base, "_mmap", None)
        if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
            handle.madvise(mmap.MADV_DONTNEED)
        return out
