"""The thin common interface of orrery: protocols, Draws, artifacts, errors and seeds.

numpy is its only dependency, so every orrery package — JAX or torch — can
hand results to every other through it.
"""

from . import validation
from ._summary import Summary
from ._version import __version__
from .artifacts import (
    DEFAULT_MAX_BYTES,
    SCHEMA_VERSION,
    Artifact,
    check_json_safe,
    load_artifact,
    publish_folder,
    read_json,
    read_json_inside,
    resolve_inside,
    save_artifact,
)
from .draws import Draws, element_names, parse_element_name
from .errors import (
    ArtifactError,
    ConfigError,
    ConfigTypeError,
    MissingDependencyError,
    NotFittedError,
    OrreryError,
    ShapeError,
    ValueDomainError,
)
from .protocols import (
    ConditionalDensity,
    Density,
    Fittable,
    Persistable,
    Sampler,
    Simulator,
    Surrogate,
)
from .seeds import SeedLike, as_int_seed, as_numpy_rng
from .validation import (
    check_choice,
    check_finite,
    check_float,
    check_fraction,
    check_ndim,
    check_nonnegative,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_shape,
    close_matches,
    require,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactError",
    "ConditionalDensity",
    "ConfigError",
    "ConfigTypeError",
    "Density",
    "Draws",
    "Fittable",
    "MissingDependencyError",
    "NotFittedError",
    "OrreryError",
    "Persistable",
    "Sampler",
    "SeedLike",
    "ShapeError",
    "Simulator",
    "Summary",
    "Surrogate",
    "ValueDomainError",
    "__version__",
    "as_int_seed",
    "as_numpy_rng",
    "check_choice",
    "check_finite",
    "check_float",
    "check_fraction",
    "check_json_safe",
    "check_ndim",
    "check_nonnegative",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_shape",
    "close_matches",
    "element_names",
    "load_artifact",
    "parse_element_name",
    "publish_folder",
    "read_json",
    "read_json_inside",
    "require",
    "resolve_inside",
    "save_artifact",
    "validation",
]
