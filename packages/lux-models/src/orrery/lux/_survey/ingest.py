"""Ingest survey files (FITS, HDF5, NumPy, Zarr) into a `SpectraStore`.

Each input file is a container of named arrays: FITS HDUs by name (or index) and
the columns of its first table HDU, plus primary-header keywords for one-star
files; HDF5 datasets and Zarr arrays by path; a folder of ``<name>.npy`` files or
an ``.npz`` (read without pickle, memory-mapped where possible). A file holds one
star (1-D flux) or many (2-D). Every file is opened once before anything is
written, so a file whose flux width or wavelength grid differs from the first is
refused (naming it) before the store exists; then the rows are written chunk by
chunk through `write_spectra` (resumable). The readers are optional extras,
imported only when a file of their format is read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import (
    ArtifactError,
    ConfigError,
    ShapeError,
    ValueDomainError,
    check_choice,
    require,
)

from .._source import SpectraChunk
from .spectra import write_spectra

FORMATS = ("fits", "hdf5", "npy", "zarr")
_SUFFIX = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".gz": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".npz": "npy",
    ".npy": "npy",
    ".zarr": "zarr",
}


def format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return check_choice(fmt, FORMATS, "format")
    if path.is_dir() and not path.suffix:
        return "npy"
    found = _SUFFIX.get(path.suffix.lower())
    if found is None:
        raise ConfigError(
            f"format: cannot tell the format of {str(path)!r} from its name; pass "
            f"format= one of {list(FORMATS)}"
        )
    return found


class _Container:
    """Named arrays of one open file (``get`` returns an array-like or a scalar)."""

    def __init__(self, path: Path, fmt: str, handle: Any) -> None:
        self.path, self.fmt, self.handle = path, fmt, handle

    def get(self, name: str) -> Any:
        try:
            return self._get(name)
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"{self.path}: it holds no array {name!r} ({err})") from None

    def _get(self, name: str) -> Any:
        h = self.handle
        if self.fmt == "fits":
            return _fits_get(h, name)
        if self.fmt == "npy":
            if isinstance(h, Path):
                file = h / f"{name}.npy"
                if not file.is_file():
                    raise KeyError(name)
                return np.load(file, mmap_mode="r", allow_pickle=False)
            return h[name]
        return h[name]  # h5py File, zarr Group


def _fits_get(hdul: Any, name: str) -> Any:
    for hdu in hdul:
        if hdu.name.lower() == name.lower() and hdu.data is not None:
            return hdu.data
    if name.isdigit() and int(name) < len(hdul):
        return hdul[int(name)].data
    for hdu in hdul[1:]:
        cols = getattr(hdu, "columns", None)
        if cols is not None and name.lower() in [c.lower() for c in cols.names]:
            return hdu.data[name]
    if name in hdul[0].header:
        return hdul[0].header[name]
    raise KeyError(name)


@contextlib.contextmanager
def open_container(path: Path, fmt: str) -> Iterator[_Container]:
    try:
        if fmt == "fits":
            fits = require("astropy.io.fits", extra="lux-models[fits]", feature="FITS ingest")
            with fits.open(path, memmap=True, lazy_load_hdus=False) as hdul:
                yield _Container(path, fmt, hdul)
        elif fmt == "hdf5":
            h5py = require("h5py", extra="lux-models[hdf5]", feature="HDF5 ingest")
            with h5py.File(path, "r") as fh:
                yield _Container(path, fmt, fh)
        elif fmt == "zarr":
            zarr = require("zarr", extra="lux-models[zarr]", feature="Zarr ingest")
            yield _Container(path, fmt, zarr.open_group(str(path), mode="r"))
        elif path.is_dir():
            yield _Container(path, fmt, path)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                yield _Container(path, fmt, npz)
        else:
            raise ConfigError(
                f"{path}: a NumPy input is a folder of <name>.npy files or an .npz file"
            )
    except (ConfigError, ShapeError, ValueDomainError):
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError) as err:
        raise ArtifactError(f"{path}: cannot read it as {fmt} ({err!r}); truncated?") from err


def _fits_header_grid(container: _Container, n_pixels: int) -> np.ndarray:
    """The wavelength grid an image header states (CRVAL1, CDELT1/CD1_1; log10 if DC-FLAG)."""
    for hdu in container.handle:
        head = hdu.header
        if "CRVAL1" in head:
            step = head.get("CDELT1", head.get("CD1_1"))
            if step is None:
                break
            pix = np.arange(n_pixels) + 1 - float(head.get("CRPIX1", 1.0))
            grid = float(head["CRVAL1"]) + pix * float(step)
            return 10.0**grid if int(head.get("DC-FLAG", 0)) == 1 else grid
    raise ConfigError(f"{container.path}: wavelength='header' but no CRVAL1/CDELT1 in it")


class FileSource:
    """The rows of many survey files as one `SpectraSource` (each file opened once up front).

    Args: see `orrery.lux.survey.ingest`.
    """

    def __init__(
        self,
        files: Sequence[Path],
        fmt: str | None,
        flux: str,
        ivar: str | None,
        sigma: str | None,
        labels: str | Sequence[str] | None,
        ids: str | None,
        wavelength: str | None,
        progress: bool,
    ) -> None:
        from tqdm.auto import tqdm

        if (ivar is None) == (sigma is None):
            raise ConfigError("ivar, sigma: give exactly one of the two array names")
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ConfigError("files: expected at least one file")
        self.fmts = [format_of(f, fmt) for f in self.files]
        self.keys = {"flux": flux, "ivar": ivar, "sigma": sigma, "labels": labels, "ids": ids}
        self.grid_key = wavelength
        self.grid: np.ndarray | None = None
        self.counts: list[int] = []
        self._pixels: int | None = None
        for file, f in tqdm(
            list(zip(self.files, self.fmts, strict=True)),
            desc="checking files",
            unit="file",
            disable=not progress,
        ):
            with open_container(file, f) as c:
                self.counts.append(self._check(c))
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    # ------------------------------------------------------------------ checking
    def _check(self, c: _Container) -> int:
        flux = c.get(self.keys["flux"])
        shape = tuple(np.shape(flux))
        if len(shape) not in (1, 2):
            raise ShapeError(f"{c.path}: flux {self.keys['flux']!r} has shape {shape}, not 1-D/2-D")
        width, rows = shape[-1], (1 if len(shape) == 1 else shape[0])
        if self._pixels is None:
            self._pixels = int(width)
        elif width != self._pixels:
            raise ShapeError(
                f"{c.path}: its spectra have {width} pixels, the first file's have "
                f"{self._pixels} ({self.files[0]}): one store holds one pixel grid"
            )
        noise = c.get(self.keys["ivar"] or self.keys["sigma"] or "")
        if tuple(np.shape(noise)) != shape:
            raise ShapeError(
                f"{c.path}: the noise array has shape {tuple(np.shape(noise))}, flux {shape}"
            )
        if self.grid_key is not None:
            if self.grid_key == "header" and c.fmt == "fits":
                grid = _fits_header_grid(c, width)
            else:
                grid = np.asarray(c.get(self.grid_key), np.float64)
                grid = grid[0] if grid.ndim == 2 else grid  # one copy per row in some tables
            self._check_grid(c.path, grid)
        return int(rows)

    def _check_grid(self, path: Path, grid: np.ndarray) -> None:
        if grid.shape != (self._pixels,):
            raise ShapeError(
                f"{path}: its wavelength grid has shape {grid.shape}, expected "
                f"({self._pixels},) like its flux"
            )
        if self.grid is None:
            self.grid = grid
        elif not np.array_equal(grid, self.grid):
            at = int(np.flatnonzero(grid != self.grid)[0])
            raise ValueDomainError(
                f"{path}: its wavelength grid differs from the first file's ({self.files[0]}) "
                f"at pixel {at} ({grid[at]!r} vs {self.grid[at]!r}): resample the spectra "
                "onto one grid before ingest"
            )

    # ------------------------------------------------------------------ SpectraSource
    @property
    def n_stars(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_pixels(self) -> int:
        return int(self._pixels or 0)

    def read(self, start: int, stop: int) -> SpectraChunk:
        parts = []
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        i = max(first, 0)
        while start < stop and i < len(self.files):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            if b > a:
                with open_container(self.files[i], self.fmts[i]) as c:
                    parts.append(self._rows(c, a, b))
            i += 1
        if not parts:
            return SpectraChunk(
                np.empty((0, self.n_pixels)), np.empty((0, self.n_pixels)), None, None
            )

        def cat(k: int) -> np.ndarray | None:
            if parts[0][k] is None:
                return None
            return np.concatenate([p[k] for p in parts], axis=0)

        flux, ivar = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return SpectraChunk(flux, ivar, cat(2), cat(3))

    def _rows(self, c: _Container, a: int, b: int) -> tuple[Any, ...]:
        def rows(name: str) -> np.ndarray:
            arr = c.get(name)
            if np.ndim(arr) == 0:  # a header keyword of a one-star file
                return np.asarray([arr])
            return np.asarray(arr[None] if np.ndim(arr) == 1 and self._one(c) else arr[a:b])

        flux = rows(self.keys["flux"]).astype(np.float64, copy=False)
        if self.keys["ivar"] is not None:
            ivar = rows(self.keys["ivar"]).astype(np.float64, copy=False)
        else:
            sig = rows(self.keys["sigma"] or "").astype(np.float64, copy=False)
            with np.errstate(divide="ignore", invalid="ignore"):
                ivar = np.where(np.isfinite(sig) & (sig > 0), 1.0 / sig**2, 0.0)
        if np.any(ivar < 0):
            raise ValueDomainError(f"{c.path}: negative inverse variances (0 masks a pixel)")
        labels = None
        key = self.keys["labels"]
        if isinstance(key, str):
            labels = rows(key).astype(np.float64).reshape(b - a, -1)
        elif key is not None:
            labels = np.stack([rows(k).astype(np.float64).reshape(b - a) for k in key], axis=1)
        ids = None
        if self.keys["ids"] == "filename":
            ids = np.asarray(
                [c.path.name] * (b - a)
                if b - a == 1
                else [f"{c.path.name}[{j}]" for j in range(a, b)]
            )
        elif self.keys["ids"] is not None:
            ids = rows(self.keys["ids"]).reshape(b - a)
            ids = ids.astype(str) if ids.dtype.kind == "S" else ids
        return flux.reshape(b - a, -1), ivar.reshape(b - a, -1), labels, ids

    def _one(self, c: _Container) -> bool:
        return np.ndim(c.get(self.keys["flux"])) == 1


def ingest(
    path: str | os.PathLike[str],
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    flux: str = "flux",
    ivar: str | None = "ivar",
    sigma: str | None = None,
    labels: str | Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    ids: str | None = None,
    wavelength: str | None = None,
    chunk_stars: int = 1024,
    dtype: Any = np.float32,
    progress: bool = True,
):
    """Ingest survey files into a `SpectraStore` at ``path`` (resumable).

    Args:
        path: the new store (or the store an interrupted ``ingest`` with the same
            arguments left: only its missing chunks are written).
        files: one file or a sequence, in star order. FITS (``.fits``, one star per
            file or an image/table of many; extra ``[fits]``), HDF5 (``.h5``;
            ``[hdf5]``), Zarr (``.zarr``; ``[zarr]``), NumPy (a folder of
            ``<name>.npy``, or an ``.npz``); ``format`` overrides the suffix.
        flux: the name of the flux array in every file (1-D: one star; 2-D: rows).
        ivar, sigma: the inverse-variance array's name, or (``ivar=None``) the
            uncertainty array's (ivar = 1/σ², 0 where σ is not positive and finite).
        labels: a 2-D label array's name, or one name per label (1-D arrays, table
            columns, or header keywords of one-star FITS files); None: no labels.
        label_names: names of the labels (default: the names in ``labels``).
        ids: the object-id array's name, ``"filename"`` (the file's name), or None.
        wavelength: the wavelength array's name in each file (``"header"``: a FITS
            image header's CRVAL1/CDELT1); every file's grid must equal the first's.
        chunk_stars: stars per chunk of the store.
        dtype: flux/ivar dtype on disk (float32 default; float64 keeps full precision).
        progress: progress bars (files checked, stars written with stars/s).

    Returns:
        The finished `SpectraStore`.

    Raises:
        ShapeError: a file whose spectra or wavelength grid have another length.
        ValueDomainError: a file whose grid has other values, negative ivar.
        ArtifactError: a file that cannot be read (truncated, not of its format).
        ConfigError: a missing array name, a foreign target, a store made otherwise.
        MissingDependencyError: the reader's extra is not installed.
    """
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    missing = [str(f) for f in items if not os.path.exists(f)]
    if missing:
        raise ConfigError(f"files: {missing[:3]} do not exist")
    source = FileSource(
        [Path(f) for f in items], format, flux, ivar, sigma, labels, ids, wavelength, progress
    )
    if label_names is None and labels is not None and not isinstance(labels, str):
        label_names = list(labels)
    return write_spectra(
        path,
        source,
        chunk_stars=chunk_stars,
        wavelength=source.grid,
        label_names=label_names,
        dtype=dtype,
        progress=progress,
    )
