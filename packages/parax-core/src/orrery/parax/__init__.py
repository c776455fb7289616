"""Named, typed, constrained, distribution-carrying parameters on Equinox modules."""

from importlib.metadata import PackageNotFoundError, version

from ._field import field
from .group import ParameterGroup
from .metadata import ParameterMetadata
from .module import Module
from .parameter import Parameter
from .tree import combine, is_parameter, partition

try:
    __version__ = version("parax-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Module",
    "Parameter",
    "ParameterGroup",
    "ParameterMetadata",
    "__version__",
    "combine",
    "field",
    "is_parameter",
    "partition",
]
