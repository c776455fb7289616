"""Posterior samples in the posterior's parameter space, convertible to physical units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orrery.interface import Draws

from .spaces import ParameterSpace

__all__ = ["PosteriorSamples", "clamp_nonfinite"]

#: Magnitude that non-finite draws are clamped to (large, yet safe to square in float64).
CLAMP_VALUE = 1e30


def clamp_nonfinite(samples: Any, space: ParameterSpace) -> tuple[np.ndarray, int]:
    """Replace non-finite values by large finite ones; return the array and how many rows had any.

    In cube space ``+inf``/``-inf`` become 1/0 and NaN becomes 0.5, keeping draws in the cube.
    """
    arr = np.array(samples, copy=True)
    bad = ~np.isfinite(arr)
    n_bad = int(bad.any(axis=-1).sum())
    if n_bad:
        if space.kind == "cube":
            arr = np.nan_to_num(arr, nan=0.5, posinf=1.0, neginf=0.0)
        else:
            big = min(CLAMP_VALUE, float(np.finfo(arr.dtype).max) / 16)
            arr = np.nan_to_num(arr, nan=0.0, posinf=big, neginf=-big)
    return arr, n_bad


@dataclass(frozen=True)
class PosteriorSamples:
    """Draws from a posterior for one observation.

    Attributes:
        samples: ``(n_samples, parameter_dim)`` in the posterior's ``parameter_space``.
        parameter_names: one name per column.
        space: the `ParameterSpace` the samples live in.
        num_nonfinite: how many draws had a non-finite value (clamped to finite ones).
        seed: the seed the draws came from.
        acceptance_rate: share of the proposed draws that lay inside the prior's
            support; below 1 only when draws outside a bounded prior's box were
            rejected and redrawn (``parameter_space="physical"``), 1.0 otherwise.
        num_outside_support: how many of the returned draws lie outside the support
            (0 unless rejection was turned off with ``reject_outside_support=False``).
    """

    samples: np.ndarray
    parameter_names: list[str]
    space: ParameterSpace
    num_nonfinite: int = 0
    seed: int | None = None
    acceptance_rate: float = 1.0
    num_outside_support: int = 0

    @property
    def parameter_space(self) -> str:
        """Name of the space the samples live in."""
        return self.space.kind

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    def __len__(self) -> int:
        return self.n_samples

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.samples, dtype=dtype)

    def to_physical(self) -> np.ndarray:
        """The samples in physical units, ``(n_samples, parameter_dim)``."""
        out = np.asarray(self.space.to_physical(np.asarray(self.samples, dtype=np.float64)))
        return out.astype(self.samples.dtype, copy=False)

    def to_draws(self, *, physical: bool = True) -> Draws:
        """The samples as `orrery.interface.Draws` (one chain).

        Args:
            physical: convert to physical units first (default) or keep the
                posterior's space.

        Names like ``theta[0]`` become elements of one vector variable ``theta``.
        """
        matrix = self.to_physical() if physical else np.asarray(self.samples)
        return Draws.from_matrix(matrix, self.parameter_names)
