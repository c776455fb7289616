"""Variational families over blocks of surrogate parameters.

A parameter group owns the trainable quantities that describe `q(θ)` for a
contiguous block of `num_params` surrogate parameters, draws `(S,
num_params)` samples from it, and returns its regulariser
(`ParameterGroup.distribution_loss`) against its prior. Several groups are
concatenated, in order, by `StochasticModel`. The submodules (`base`,
`deterministic`, `gaussian`, `langevin`) are those of pypolymix.
"""

from .base import DEFAULT_KL_SAMPLES, NoVariationalDistributionError, ParameterGroup
from .deterministic import DeterministicGroup
from .gaussian import GaussianGroup, IIDGaussianGroup, LowRankGaussianGroup
from .langevin import LangevinGroup

__all__ = [
    "DEFAULT_KL_SAMPLES",
    "DeterministicGroup",
    "GaussianGroup",
    "IIDGaussianGroup",
    "LangevinGroup",
    "LowRankGaussianGroup",
    "NoVariationalDistributionError",
    "ParameterGroup",
]
