"""The Cannon and the Lux latent-variable model for stellar spectra and other multi-output data."""

from orrery.interface import ConfigTypeError

from . import datasets, plot, transforms
from ._version import __version__
from .cannon import Cannon, LabelInference
from .compilation_cache import enable_compilation_cache
from .data import (
    AbstractPreprocessor,
    LuxData,
    NullPreprocessor,
    OutputData,
    PolluxData,
    ShiftScalePreprocessor,
)
from .lux import LVM, Lux, LuxModel
from .optimize import (
    IterativeOptimizationResult,
    ParameterBlock,
    default_blocks,
    optimize_iterative,
)
from .transforms import (
    AbstractMultiTransform,
    AbstractSingleTransform,
    AbstractTransform,
    AdditiveOffsetTransform,
    AffineTransform,
    ConcatenateTransform,
    EquinoxNNTransform,
    FunctionTransform,
    LinearTransform,
    NoOpTransform,
    OffsetTransform,
    ParamPriorsT,
    ParamShapesT,
    PolyFeatureTransform,
    QuadraticTransform,
    ScatterTransform,
    ShapeSpec,
    TransformSequence,
)

__all__ = [
    "LVM",
    "AbstractMultiTransform",
    "AbstractPreprocessor",
    "AbstractSingleTransform",
    "AbstractTransform",
    "AdditiveOffsetTransform",
    "AffineTransform",
    "Cannon",
    "ConcatenateTransform",
    "ConfigTypeError",
    "EquinoxNNTransform",
    "FunctionTransform",
    "IterativeOptimizationResult",
    "LabelInference",
    "LinearTransform",
    "Lux",
    "LuxData",
    "LuxModel",
    "NoOpTransform",
    "NullPreprocessor",
    "OffsetTransform",
    "OutputData",
    "ParamPriorsT",
    "ParamShapesT",
    "ParameterBlock",
    "PolluxData",
    "PolyFeatureTransform",
    "QuadraticTransform",
    "ScatterTransform",
    "ShapeSpec",
    "ShiftScalePreprocessor",
    "TransformSequence",
    "__version__",
    "datasets",
    "default_blocks",
    "enable_compilation_cache",
    "optimize_iterative",
    "plot",
    "transforms",
]
