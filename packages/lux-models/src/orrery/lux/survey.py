"""Surveys on disk: a chunked store of spectra, ingest from survey files, label catalogues.

`SpectraStore` holds flux, inverse variance, optional labels (with names) and object
ids, and the wavelength grid, in chunks of stars (plain ``.npy`` files and JSON, each
chunk hashed and checked when read; no pickle). It is a `SpectraSource`: the
streaming `Cannon.fit`, `Cannon.infer_labels` over a survey and `infer_latents`
(Lux for new objects) take it. `write_spectra` fills one from any `SpectraSource`;
`ingest` from FITS, HDF5, NumPy or Zarr files. Both resume where a killed run
stopped, and never delete or overwrite what they did not create.

`LabelStore` is what `Cannon.infer_labels(source, catalogue=path)` writes: labels,
covariances, χ², convergence and usability flags per star, chunk by chunk;
`LatentStore` what `infer_latents` writes (latents, their covariance, predicted outputs).
`limit_threads` sets the threads (and optionally the cores) of a worker process (a pool's
initializer); `process_pool` makes a spawned pool of such workers, each pinned to cores of
its own on request.
"""

from __future__ import annotations

from ._source import ArraySource, SpectraChunk, SpectraSource
from ._survey.ingest import ingest
from ._survey.lux import infer_latents
from ._survey.spectra import LabelStore, LatentStore, SpectraStore, write_spectra
from ._survey.workers import limit_threads, process_pool

__all__ = [
    "ArraySource",
    "LabelStore",
    "LatentStore",
    "SpectraChunk",
    "SpectraSource",
    "SpectraStore",
    "infer_latents",
    "ingest",
    "limit_threads",
    "process_pool",
    "write_spectra",
]
