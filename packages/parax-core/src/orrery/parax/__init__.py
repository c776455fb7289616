"""Named, typed, constrained, distribution-carrying parameters on Equinox modules.

A drop-in for the parax 0.4 API (``import orrery.parax as parax``); the deliberate
differences are listed in the package README. The parax 0.11 API is `orrery.parax.v011`
(``import orrery.parax.v011 as parax``); `Fixed`, `is_param` and `as_param` keep their
0.4 meaning here and raise where a call can only be 0.11 code.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import bijectors, distributions, op, parameters
from ._generations import V011_ONLY_NAMES
from ._registry import register_loadable
from .field import field
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


def __getattr__(name: str) -> Any:
    """`orrery.parax.v011` on first use; a pointer to it for parax 0.11-only names."""
    if name == "v011":
        return importlib.import_module(".v011", __name__)
    if name in V011_ONLY_NAMES:
        raise AttributeError(
            f"module 'orrery.parax' has no attribute {name!r}: orrery.parax is the parax 0.4 "
            f"API, and {name!r} is parax 0.11's; for parax 0.11 code use "
            "`import orrery.parax.v011 as parax`"
        )
    raise AttributeError(f"module 'orrery.parax' has no attribute {name!r}")


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
