"""Chunks of a `SpectraSource` for the streaming Cannon fit, within a memory budget.

The budget (`parse_budget`) sets the stars per chunk (`chunk_rows`) and how many
chunks stay resident once read (`resident_chunks`); `Reader` hands the chunks
over in order, padded to one length with rows of zero weight (flux, ivar and
labels 0), cleaned where the base pass found them dirty, the next one read on a
background thread while kept ones are summed, every other pass in reverse (see
`Reader.__iter__`). A source's
``read`` must return arrays it does not change afterwards: on the CPU a full, aligned
chunk is shared with JAX, not copied.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import numpy as np

from orrery.interface import ConfigError, ShapeError, ValueDomainError

from .._source import SpectraChunk, SpectraSource
from . import validate as _validate

#: the budget when none is given: 2 GiB
DEFAULT_BUDGET = 2 * 2**30
#: most bytes of flux in one chunk (larger chunks gain nothing; the rest of the budget
#: keeps chunks resident, so that later passes need not read them again)
CHUNK_BYTES = 32 * 2**20
#: chunk rows are a multiple of this when they can be: 16 rows of float32 or float64 pixels
#: start 64-byte aligned in a memory map, which JAX then reads without a copy
_ROW_ALIGN = 16
_ALIGN = 64
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_budget(budget: int | float | str | None) -> int:
    """Bytes from ``memory_budget``: a positive number of bytes or a string like ``"2GiB"``."""
    if budget is None:
        return DEFAULT_BUDGET
    value: float | None = None
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", budget)
        if match and match.group(2).lower() in _UNITS:
            value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    elif isinstance(budget, int | float | np.integer | np.floating) and not isinstance(
        budget, bool
    ):
        value = float(budget)
    if value is None or not np.isfinite(value) or value < 1:
        raise ConfigError(
            f"memory_budget: expected a positive number of bytes or a size such as '2GiB' "
            f"or '500MB', got {budget!r}"
        )
    return int(value)


def _costs(n_pixels: int, n_features: int, itemsize: int) -> tuple[int, int]:
    """Bytes of the fixed per-pixel state, and per star of a chunk."""
    k = n_features
    fixed = n_pixels * itemsize * (5 * k * k + 4 * k * (k + 1) + 24 * k + 64)
    return fixed, 2 * 2 * n_pixels * (itemsize + 8)


def budget_for(rows: int, n_pixels: int, n_features: int, itemsize: int) -> int:
    """The smallest budget whose chunks hold ``rows`` stars (before row alignment)."""
    fixed, per_row = _costs(n_pixels, n_features, itemsize)
    return fixed + rows * per_row


def chunk_rows(budget: int, n_stars: int, n_pixels: int, n_features: int, itemsize: int) -> int:
    """Stars per chunk: as many as the budget holds in flight, at most `CHUNK_BYTES` of flux.

    In flight per star: flux and ivar in the fit's dtype and as the source hands
    them over (up to 8 bytes each), for the chunk being summed and the one being
    read. Fixed: the per-pixel state (Gram matrices, the refinement matrix, their
    accumulators and a few ``(pixels, features)`` arrays). More than `_ROW_ALIGN`
    rows are rounded down to a multiple of it.

    Raises:
        ConfigError: when the budget cannot hold the state and one star.
    """
    fixed, per_row = _costs(n_pixels, n_features, itemsize)
    rows = (budget - fixed) // per_row
    if rows < 1:
        raise ConfigError(
            f"memory_budget: {budget} bytes cannot hold the fit of {n_pixels} pixels "
            f"({fixed} bytes of per-pixel state) and one star ({per_row} bytes); "
            f"give at least {fixed + per_row} bytes"
        )
    rows = min(int(rows), n_stars, max(_ROW_ALIGN, CHUNK_BYTES // (n_pixels * itemsize)))
    if _ROW_ALIGN <= rows < n_stars:
        rows -= rows % _ROW_ALIGN
    return rows


def resident_chunks(budget: int, rows: int, n_pixels: int, n_features: int, itemsize: int) -> int:
    """How many chunks (flux and ivar in the fit's dtype) the budget keeps after the first read."""
    fixed, per_row = _costs(n_pixels, n_features, itemsize)
    spare = budget - fixed - rows * per_row
    return max(0, spare // (rows * 2 * n_pixels * itemsize))


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C array whose data start `_ALIGN`-byte aligned (JAX shares it on CPU)."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + _ALIGN, np.uint8)
    start = (-buf.ctypes.data) % _ALIGN
    return buf[start : start + nbytes].view(dtype).reshape(shape)


def _padded(arr: np.ndarray, rows: int, dtype: np.dtype) -> np.ndarray:
    """``arr`` as an aligned ``dtype`` array of ``rows`` rows, zeros below its own."""
    out = _aligned_empty((rows, *arr.shape[1:]), dtype)
    out[: len(arr)] = arr
    out[len(arr) :] = 0
    return out


class Chunk(NamedTuple):
    """One chunk on the device, and its host arrays (before cleaning)."""

    index: int
    labels: jax.Array
    flux: jax.Array
    ivar: jax.Array
    host_flux: np.ndarray
    host_ivar: np.ndarray


class Reader:
    """The chunks of a source, padded to ``rows`` stars, cleaned where found dirty."""

    def __init__(
        self,
        source: SpectraSource,
        labels: np.ndarray,
        rows: int,
        dtype: np.dtype,
        resident: int = 0,
        preloaded: dict[int, SpectraChunk] | None = None,
    ):
        self.source, self.rows, self.dtype = source, rows, dtype
        self.n_stars, self.n_pixels = int(source.n_stars), int(source.n_pixels)
        self.labels = labels
        self.n_chunks = -(-self.n_stars // rows)
        self.dirty: set[int] = set()
        #: chunks kept on the device once read (the first ``resident``), without host arrays
        self.resident, self.kept = resident, {}
        #: chunks already read (by `source_labels`), handed over on their first read
        self.preloaded = {} if preloaded is None else preloaded
        #: whether the base pass has checked (and where needed cleaned) every chunk
        self.checked = False
        #: passes after the base pass that read chunks (odd ones walk backwards)
        self.passes = 0

    def keep(self, chunk: Chunk) -> None:
        """Keep ``chunk`` for later passes, if it is one of the resident ones."""
        if chunk.index < self.resident:
            none = np.empty((0, self.n_pixels), self.dtype)
            self.kept[chunk.index] = chunk._replace(host_flux=none, host_ivar=none)

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.rows, min(self.n_stars, (index + 1) * self.rows)

    def _checked(self, chunk: SpectraChunk, start: int, stop: int) -> tuple[np.ndarray, ...]:
        shape = (stop - start, self.n_pixels)
        flux = _validate.numeric(chunk.flux, "source")
        ivar = _validate.numeric(chunk.ivar, "source")
        for name, arr in (("flux", flux), ("ivar", ivar)):
            if arr.shape != shape:
                raise ShapeError(
                    f"source: read({start}, {stop}) gave {name} of shape {arr.shape}, "
                    f"expected {shape}"
                )
        return flux, ivar

    def _load(self, index: int) -> Chunk:
        start, stop = self.bounds(index)
        given = self.preloaded.pop(index, None)
        chunk = self.source.read(start, stop) if given is None else given
        flux, ivar = self._checked(chunk, start, stop)
        if index in self.dirty:
            flux, ivar = clean(flux, ivar)
        full = stop - start == self.rows
        if full and flux.dtype == self.dtype and ivar.dtype == self.dtype:
            host_flux, host_ivar = flux, ivar  # shared by JAX where aligned (no copy)
            dev_flux, dev_ivar = _validate._to_device(flux), _validate._to_device(ivar)
        else:
            host_flux, host_ivar = flux, ivar
            dev_flux = jax.device_put(_padded(flux, self.rows, self.dtype))
            dev_ivar = jax.device_put(_padded(ivar, self.rows, self.dtype))
        labels = jax.device_put(_padded(self.labels[start:stop], self.rows, self.dtype))
        return Chunk(index, labels, dev_flux, dev_ivar, host_flux, host_ivar)

    def device_chunk(self, index: int, flux: np.ndarray, ivar: np.ndarray) -> Chunk:
        """Chunk ``index`` from host arrays given (its cleaned copy)."""
        start, stop = self.bounds(index)
        labels = jax.device_put(_padded(self.labels[start:stop], self.rows, self.dtype))
        dev = [jax.device_put(_padded(a, self.rows, self.dtype)) for a in (flux, ivar)]
        return Chunk(index, labels, dev[0], dev[1], flux, ivar)

    def __iter__(self) -> Iterator[Chunk]:
        """The chunks, kept ones from memory, the others read on a thread ahead.

        A chunk read is kept (`keep`) unless the base pass has yet to check it. After
        the base pass, a pass that must read chunks again walks them in the opposite
        direction to the pass before: the chunks it reads first are those the last
        pass read last, still in the system's page cache when the source is a file
        larger than that cache (a scan in one direction would find none of them).
        """
        order = list(range(self.n_chunks))
        todo = [i for i in order if i not in self.kept]
        if todo and self.checked:
            self.passes += 1
            if self.passes % 2:
                order, todo = order[::-1], todo[::-1]
        order = interleaved([i for i in order if i in self.kept], todo)
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(self._load, todo[0]) if todo else None
            for index in order:
                if index in self.kept:
                    yield self.kept[index]
                    continue
                assert ahead is not None
                current = ahead.result()
                later = todo.index(index) + 1
                ahead = pool.submit(self._load, todo[later]) if later < len(todo) else None
                if self.checked:
                    self.keep(current)
                yield current
                del current
        release_freed_memory()


def interleaved(kept: list[int], todo: list[int]) -> list[int]:
    """``todo`` in its order, spread evenly among ``kept`` (in theirs): kept chunks first.

    Each chunk to read is then read on the thread while the kept chunks before it
    are summed, instead of all reads falling due one after another at the end (or
    start) of a pass with nothing else to overlap them.
    """
    if not todo:
        return list(kept)
    out: list[int] = []
    for j, index in enumerate(todo):
        out += kept[len(kept) * j // len(todo) : len(kept) * (j + 1) // len(todo)]
        out.append(index)
    return out


def _libc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        return None


_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    A chunk's buffers are freed once its kernel has run, but glibc keeps freed memory
    of the smaller allocations (XLA's outputs and temporaries, spread over its
    threads' arenas) in the process: without this the RSS of a long streaming fit
    creeps past its budget, pass after pass. Called once per pass, not per chunk:
    within a pass the next chunk's reads reuse what the last one freed, where a trim
    after each chunk cost ~8 ms and made every read fault its pages in afresh.
    """
    if _TRIM is not None:
        _TRIM(0)


def clean(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host `clean_inputs`: unusable entries (non-finite, ivar <= 0) set to flux 0, ivar 0."""
    with np.errstate(invalid="ignore"):
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    return np.where(good, flux, 0), np.where(good, ivar, 0)


def refuse_bad_ivar(flux: np.ndarray, ivar: np.ndarray, start: int, stop: int) -> None:
    """Raise for a negative inverse variance, or ``+inf`` at a finite flux, in these rows."""
    with np.errstate(invalid="ignore"):
        if np.any(ivar < 0):
            raise ValueDomainError(
                f"source: rows {start}:{stop} hold negative inverse variances (ivar); "
                "expected non-negative (0 masks an entry)"
            )
    n_inf = int(np.count_nonzero(np.isposinf(ivar) & np.isfinite(flux)))
    if n_inf:
        raise ValueDomainError(
            f"source: rows {start}:{stop} hold {n_inf} entries with a finite flux and "
            "ivar +inf (zero noise), which cannot be weighted; give finite inverse "
            "variances (0 masks an entry)"
        )


def align_to_source(rows: int, source: SpectraSource) -> int:
    """``rows`` made a multiple or divisor of the source's own chunk (``chunk_stars``), if any.

    A store reads whole chunks from disk: a range across two of them reads both.
    """
    size = getattr(source, "chunk_stars", None)
    if not isinstance(size, int) or size < 1 or rows >= int(source.n_stars):
        return rows
    if rows >= size:
        return rows - rows % size
    while size % rows:
        rows -= 1
    return rows


def source_shape(source: SpectraSource, output_size: int) -> tuple[int, int]:
    """``(n_stars, n_pixels)`` of a source, checked against the model."""
    n, p = int(source.n_stars), int(source.n_pixels)
    if p != output_size:
        raise ShapeError(f"source: holds {p} pixels per star, expected {output_size} (output_size)")
    if n < 1:
        raise ValueDomainError("source: holds no stars; there is nothing to fit")
    return n, p


def source_labels(
    source: SpectraSource,
    rows: int,
    label_size: int,
    preload: dict[int, SpectraChunk] | None = None,
    keep: int = 0,
    itemsize: int = 8,
) -> np.ndarray:
    """Every star's labels: the source's ``labels`` array where it has one, else read by chunk.

    Read by chunk, the first ``keep`` chunks (``rows`` stars each) go into
    ``preload`` for the fit's first pass, so that the chunks that will stay
    resident are read once (not where their flux is wider than ``itemsize``).

    Raises:
        ValueDomainError: when the source holds no labels.
        ShapeError: when they are not ``(n_stars, label_size)``.
    """
    n = int(source.n_stars)
    whole = getattr(source, "labels", None)
    if whole is not None and not callable(whole):
        labels = np.asarray(whole)
    else:
        parts = []
        for index, start in enumerate(range(0, n, rows)):
            chunk = source.read(start, min(n, start + rows))
            if chunk.labels is None:
                break
            parts.append(np.asarray(chunk.labels))
            wide = np.asarray(chunk.flux).dtype.itemsize > itemsize
            if preload is not None and index < keep and not wide:
                preload[index] = chunk
        labels = np.concatenate(parts) if parts and len(parts) * rows >= n else None
    if labels is None:
        raise ValueDomainError(
            "source: holds no labels; The Cannon is trained on labelled spectra "
            "(give the source its training labels)"
        )
    labels = _validate.numeric(labels, "source")
    if labels.shape != (n, label_size):
        raise ShapeError(
            f"source: labels of shape {labels.shape}, expected ({n}, {label_size}) "
            "(one row per star, label_size columns)"
        )
    return labels
