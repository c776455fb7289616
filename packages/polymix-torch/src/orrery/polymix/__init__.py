"""PyTorch stochastic surrogate models with variational parameter groups.

A drop-in re-implementation of pypolymix 0.1.9 (same constructors, module
paths, parameter layouts and `state_dict` keys). Three composable layers:

- `orrery.polymix.surrogate_models`: deterministic maps `(x, params) -> y`
  evaluated for a whole batch of parameter samples at once;
- `orrery.polymix.parameter_groups`: variational families (with
  `orrery.polymix.priors`) over blocks of those parameters;
- `StochasticModel`: a surrogate fed by concatenated group samples.

Example:
    >>> import torch
    >>> from orrery.polymix import StochasticModel, parameter_groups, surrogate_models
    >>> surrogate = surrogate_models.NeuralNetwork(num_inputs=1, num_outputs=1)
    >>> group = parameter_groups.IIDGaussianGroup("nn", surrogate.num_params())
    >>> model = StochasticModel(surrogate, [group])
    >>> model(torch.linspace(-1, 1, 32).unsqueeze(-1), num_samples=8).shape
    torch.Size([8, 32, 1])
"""

from . import parameter_groups, priors, surrogate_models
from ._version import __version__
from .io import load, save
from .parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    NoVariationalDistributionError,
    ParameterGroup,
)
from .priors import GaussianPrior, IIDGaussianPrior, LaplacePrior, Prior
from .stochastic_model import StochasticModel
from .summary import PredictiveSummary, predictive_summary, to_draws
from .surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    SobolIndices,
    SurrogateModel,
    legendre_polynomial_p,
)

__all__ = [
    "DeterministicGroup",
    "GatingNetwork",
    "GaussianGroup",
    "GaussianPrior",
    "IIDGaussianGroup",
    "IIDGaussianPrior",
    "LangevinGroup",
    "LaplacePrior",
    "LowRankGaussianGroup",
    "MixtureOfExperts",
    "NeuralNetwork",
    "NoVariationalDistributionError",
    "ParameterGroup",
    "PolynomialChaosExpansion",
    "PredictiveSummary",
    "Prior",
    "SobolIndices",
    "StochasticModel",
    "SurrogateModel",
    "__version__",
    "legendre_polynomial_p",
    "load",
    "parameter_groups",
    "predictive_summary",
    "priors",
    "save",
    "surrogate_models",
    "to_draws",
]
