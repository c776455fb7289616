"""What the survey-scale paths read: spectra that arrive a block of stars at a time.

`SpectraSource` is the one protocol the streaming fit, survey labelling and Lux
inference take; the on-disk store implements it, and `ArraySource` wraps arrays
already in memory (tests, and the "in memory" side of every equality check).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float

from orrery.interface import ShapeError, ValueDomainError

__all__ = ["ArraySource", "SpectraChunk", "SpectraSource"]


class SpectraChunk(NamedTuple):
    """Rows ``start:stop`` of a source; ``labels``/``ids`` are None when the source has none."""

    flux: Float[np.ndarray, "rows pixels"]
    ivar: Float[np.ndarray, "rows pixels"]
    labels: Float[np.ndarray, "rows labels"] | None
    ids: np.ndarray | None


@runtime_checkable
class SpectraSource(Protocol):
    """Spectra of ``n_stars`` objects on one grid of ``n_pixels``, read by row range."""

    @property
    def n_stars(self) -> int: ...

    @property
    def n_pixels(self) -> int: ...

    def read(self, start: int, stop: int) -> SpectraChunk:
        """Rows ``start:stop`` (``0 <= start <= stop <= n_stars``) as NumPy arrays."""
        ...


class ArraySource:
    """A `SpectraSource` over arrays in memory (no copy)."""

    def __init__(
        self,
        flux: Float[np.ndarray, "n pixels"],
        ivar: Float[np.ndarray, "n pixels"],
        labels: Float[np.ndarray, "n labels"] | None = None,
        ids: np.ndarray | None = None,
    ) -> None:
        flux, ivar = np.asarray(flux), np.asarray(ivar)
        if flux.ndim != 2:
            raise ShapeError(f"flux: expected a (stars, pixels) array, got shape {flux.shape}")
        if ivar.shape != flux.shape:
            raise ShapeError(f"ivar: expected shape {flux.shape} like flux, got {ivar.shape}")
        for name, extra in (("labels", labels), ("ids", ids)):
            if extra is not None and len(extra) != len(flux):
                raise ShapeError(f"{name}: expected {len(flux)} rows like flux, got {len(extra)}")
        self.flux, self.ivar = flux, ivar
        self.labels = None if labels is None else np.asarray(labels)
        self.ids = None if ids is None else np.asarray(ids)

    @property
    def n_stars(self) -> int:
        return int(self.flux.shape[0])

    @property
    def n_pixels(self) -> int:
        return int(self.flux.shape[1])

    def read(self, start: int, stop: int) -> SpectraChunk:
        if not 0 <= start <= stop <= self.n_stars:
            raise ValueDomainError(
                f"start, stop: expected 0 <= start <= stop <= {self.n_stars}, got {start}, {stop}"
            )
        rows = slice(start, stop)
        return SpectraChunk(
            self.flux[rows],
            self.ivar[rows],
            None if self.labels is None else self.labels[rows],
            None if self.ids is None else self.ids[rows],
        )
