"""The Cannon and the Lux latent-variable model for stellar spectra and other multi-output data.

`Cannon` and what it needs import eagerly; the Lux side (`Lux`, `LVM`, the
optimisers and `transforms`, which pull in numpyro and optax) loads on first
use, so ``import orrery.lux`` for a Cannon fit costs what The Cannon needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orrery.interface import ConfigTypeError

from . import datasets, plot, survey
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
from .survey import (
    ArraySource,
    LabelStore,
    LatentStore,
    SpectraSource,
    SpectraStore,
    infer_latents,
    ingest,
    write_spectra,
)

if TYPE_CHECKING:  # loaded lazily at run time (`__getattr__`); imported here for type checkers
    from . import transforms
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

#: the lazily loaded names and the module (relative to this package) that defines each
_LAZY = {
    "transforms": "",
    **dict.fromkeys(("LVM", "Lux", "LuxModel"), ".lux"),
    **dict.fromkeys(
        ("IterativeOptimizationResult", "ParameterBlock", "default_blocks", "optimize_iterative"),
        ".optimize",
    ),
    **dict.fromkeys(
        (
            "AbstractMultiTransform",
            "AbstractSingleTransform",
            "AbstractTransform",
            "AdditiveOffsetTransform",
            "AffineTransform",
            "ConcatenateTransform",
            "EquinoxNNTransform",
            "FunctionTransform",
            "LinearTransform",
            "NoOpTransform",
            "OffsetTransform",
            "ParamPriorsT",
            "ParamShapesT",
            "PolyFeatureTransform",
            "QuadraticTransform",
            "ScatterTransform",
            "ShapeSpec",
            "TransformSequence",
        ),
        ".transforms",
    ),
}

__all__ = [
    "LVM",
    "AbstractMultiTransform",
    "AbstractPreprocessor",
    "AbstractSingleTransform",
    "AbstractTransform",
    "AdditiveOffsetTransform",
    "AffineTransform",
    "ArraySource",
    "Cannon",
    "ConcatenateTransform",
    "ConfigTypeError",
    "EquinoxNNTransform",
    "FunctionTransform",
    "IterativeOptimizationResult",
    "LabelInference",
    "LabelStore",
    "LatentStore",
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
    "SpectraSource",
    "SpectraStore",
    "TransformSequence",
    "__version__",
    "datasets",
    "default_blocks",
    "enable_compilation_cache",
    "infer_latents",
    "ingest",
    "optimize_iterative",
    "plot",
    "survey",
    "transforms",
    "write_spectra",
]


def __getattr__(name: str) -> Any:
    """Load a Lux-side name (`_LAZY`) on first use and keep it in the package namespace."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if where:
        value = getattr(importlib.import_module(where, __name__), name)
    else:
        value = importlib.import_module(f".{name}", __name__)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
