"""Named, typed, constrained, distribution-carrying parameters on Equinox modules."""

from importlib.metadata import PackageNotFoundError, version

from . import bijectors, distributions, op, parameters
from ._field import field
from ._registry import register_loadable
from .group import ParameterGroup
from .io import load, save
from .metadata import ParameterMetadata
from .module import Module
from .operator import Operator
from .parameter import Parameter
from .sampling import draws_from, func_samples, sampled
from .tree import combine, is_parameter, partition
from .uncertainty import covariance, func_jacobian, func_sensitivity

try:
    __version__ = version("parax-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Module",
    "Operator",
    "Parameter",
    "ParameterGroup",
    "ParameterMetadata",
    "__version__",
    "bijectors",
    "combine",
    "covariance",
    "distributions",
    "draws_from",
    "field",
    "func_jacobian",
    "func_samples",
    "func_sensitivity",
    "is_parameter",
    "load",
    "op",
    "parameters",
    "partition",
    "register_loadable",
    "sampled",
    "save",
]
