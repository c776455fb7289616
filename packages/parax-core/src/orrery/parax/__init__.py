"""Named, typed, constrained, distribution-carrying parameters on Equinox modules.

A drop-in for the parax 0.4 API (``import orrery.parax as parax``); the deliberate
differences are listed in the package README.
"""

from importlib.metadata import PackageNotFoundError, version

from . import bijectors, distributions, op, parameters
from ._field import field
from ._registry import register_loadable
from .group import ParameterGroup
from .io import load, save
from .metadata import ParameterMetadata
from .module import Module
from .operator import Operator, OpInputs, OpOutputs
from .parameter import (
    Parameter,
    as_param,
    is_fixed_param,
    is_free_param,
    is_param,
    is_valid_param,
)
from .parameters import (
    CenteredUniform,
    Fixed,
    Free,
    Normal,
    RelativeNormal,
    RelativeUniform,
    Uniform,
)
from .sampling import draws_from, func_samples, sampled
from .tree import combine, is_parameter, partition
from .uncertainty import covariance, func_jacobian, func_sensitivity

try:
    __version__ = version("parax-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "CenteredUniform",
    "Fixed",
    "Free",
    "Module",
    "Normal",
    "OpInputs",
    "OpOutputs",
    "Operator",
    "Parameter",
    "ParameterGroup",
    "ParameterMetadata",
    "RelativeNormal",
    "RelativeUniform",
    "Uniform",
    "__version__",
    "as_param",
    "bijectors",
    "combine",
    "covariance",
    "distributions",
    "draws_from",
    "field",
    "func_jacobian",
    "func_samples",
    "func_sensitivity",
    "is_fixed_param",
    "is_free_param",
    "is_param",
    "is_parameter",
    "is_valid_param",
    "load",
    "op",
    "parameters",
    "partition",
    "register_loadable",
    "sampled",
    "save",
]
