"""Structured observations: blocks of one modality, and their encoded context vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orrery.interface import ConfigError, ShapeError, check_choice, check_finite, check_nonnegative

__all__ = ["MODALITIES", "EncodedObservation", "ObservationBlock"]

#: The observation modalities an encoder exists for.
MODALITIES: tuple[str, ...] = ("spectrum", "photometry", "time_series", "auxiliary")


@dataclass(frozen=True, init=False)
class ObservationBlock:
    """One block of a single observation: a spectrum, a set of magnitudes, a light curve, ...

    Args:
        modality: one of ``"spectrum"``, ``"photometry"``, ``"time_series"``, ``"auxiliary"``.
        values: the measured values, a 1-D array (a scalar becomes length 1).
        uncertainties: optional 1-sigma uncertainties, same shape, non-negative.
        name: the block's name; defaults to the modality. A posterior matches the
            blocks of an observation to those it was trained on by this name.
        coordinates: optional coordinates of the values (wavelengths, times ...),
            same shape; kept for bookkeeping, not used by the encoders.

    Raises:
        ConfigError: unknown modality.
        ShapeError: values not 1-D, or uncertainties/coordinates of another shape.
        ValueDomainError: non-finite values or negative/non-finite uncertainties.

    Example:
        >>> block = ObservationBlock("photometry", [12.1, 11.8], uncertainties=[0.1, 0.1])
        >>> block.name, block.values.shape
        ('photometry', (2,))
    """

    modality: str
    values: np.ndarray
    uncertainties: np.ndarray | None
    name: str
    coordinates: np.ndarray | None

    def __init__(
        self,
        modality: str,
        values: Any,
        uncertainties: Any = None,
        name: str | None = None,
        coordinates: Any = None,
    ) -> None:
        check_choice(modality, MODALITIES, "modality")
        label = modality if name is None else name
        if not isinstance(label, str) or not label:
            raise ConfigError(f"name: expected a non-empty str, got {name!r}")
        vals = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if vals.ndim != 1:
            raise ShapeError(
                f"values of block {label!r}: expected a 1-D array, got shape {vals.shape}"
            )
        check_finite(vals, f"values of block {label!r}")
        unc = None
        if uncertainties is not None:
            unc = np.atleast_1d(np.asarray(uncertainties, dtype=np.float64))
            if unc.shape != vals.shape:
                raise ShapeError(
                    f"uncertainties of block {label!r}: expected shape {vals.shape} like the "
                    f"values, got {unc.shape}"
                )
            check_nonnegative(unc, f"uncertainties of block {label!r}")
        coords = None
        if coordinates is not None:
            coords = np.atleast_1d(np.asarray(coordinates, dtype=np.float64))
            if coords.shape != vals.shape:
                raise ShapeError(
                    f"coordinates of block {label!r}: expected shape {vals.shape} like the "
                    f"values, got {coords.shape}"
                )
        object.__setattr__(self, "modality", modality)
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "uncertainties", unc)
        object.__setattr__(self, "name", label)
        object.__setattr__(self, "coordinates", coords)

    @property
    def size(self) -> int:
        """Number of values in the block."""
        return int(self.values.shape[0])


@dataclass(frozen=True)
class EncodedObservation:
    """The context vector a posterior conditions on, with light metadata.

    Attributes:
        embedding: float array ``(embedding_dim,)``.
        metadata: ``{"modalities": [...], "block_names": [...]}`` and anything else
            the encoder wants to report.
    """

    embedding: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        emb = np.asarray(self.embedding)
        if emb.ndim != 1:
            raise ShapeError(f"embedding: expected a 1-D array, got shape {emb.shape}")
        object.__setattr__(self, "embedding", emb)


def blocks_by_name(
    blocks: ObservationBlock | Sequence[ObservationBlock] | Mapping[str, Any],
) -> dict[str, ObservationBlock]:
    """Index the blocks of one observation by name (private helper shared by the posterior)."""
    if isinstance(blocks, ObservationBlock):
        blocks = [blocks]
    if isinstance(blocks, Mapping):
        raise ConfigError(
            "blocks: expected a list of ObservationBlock, got a mapping; wrap arrays in "
            "ObservationBlock(modality, values, uncertainties, name=...)"
        )
    out: dict[str, ObservationBlock] = {}
    for i, block in enumerate(blocks):
        if not isinstance(block, ObservationBlock):
            raise ConfigError(
                f"blocks[{i}]: expected an ObservationBlock, got {type(block).__name__}"
            )
        if block.name in out:
            raise ConfigError(f"blocks: the block name {block.name!r} appears twice")
        out[block.name] = block
    return out
