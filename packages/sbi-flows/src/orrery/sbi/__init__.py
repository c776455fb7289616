"""Amortized simulation-based inference with conditional normalizing flows.

Build a `SimulationDataset` from simulated parameters and observations,
train a `ConditionalFlowPosterior` on it, then encode an observation and
sample its posterior::

    dataset = SimulationDataset.from_arrays(theta, x)
    posterior = ConditionalFlowPosterior(parameter_dim=theta.shape[1])
    posterior.fit(dataset)
    encoded = posterior.encode_observation([ObservationBlock("auxiliary", x_obs)])
    draws = posterior.sample_posterior(encoded, 1000).to_physical()

Each campaign worker or survey process compiles the same programs again; the
opt-in, process-global `enable_compilation_cache` (`orrery.interface`'s, also
``orrery.lux.enable_compilation_cache``) keeps them on disk for the next process.
"""

from orrery.interface.compilation_cache import enable_compilation_cache

from . import encoders, spaces, training
from ._version import __version__
from .campaign import simulate
from .dataset import PosteriorBatch, SimulationDataset
from .observations import MODALITIES, EncodedObservation, ObservationBlock
from .persistence import POSTERIOR_SCHEMA_VERSION, PersistentPosteriorEstimator
from .posterior import (
    ConditionalAutoregressiveFlowPosterior,
    ConditionalFlowPosterior,
    ConditionalNeuralAutoregressiveFlowPosterior,
    ConditionalSplineFlowPosterior,
)
from .samples import PosteriorSamples
from .spaces import ParameterSpace
from .streaming import StreamingSimulationDataset
from .training import SBITrainer, TrainingArtifacts

__all__ = [
    "MODALITIES",
    "POSTERIOR_SCHEMA_VERSION",
    "ConditionalAutoregressiveFlowPosterior",
    "ConditionalFlowPosterior",
    "ConditionalNeuralAutoregressiveFlowPosterior",
    "ConditionalSplineFlowPosterior",
    "EncodedObservation",
    "ObservationBlock",
    "ParameterSpace",
    "PersistentPosteriorEstimator",
    "PosteriorBatch",
    "PosteriorSamples",
    "SBITrainer",
    "SimulationDataset",
    "StreamingSimulationDataset",
    "TrainingArtifacts",
    "__version__",
    "diagnostics",
    "enable_compilation_cache",
    "encoders",
    "simulate",
    "spaces",
    "training",
]


def __getattr__(name: str):
    """Load `orrery.sbi.diagnostics` on first use (it pulls in SciPy; plots pull matplotlib)."""
    if name == "diagnostics":
        import importlib

        module = importlib.import_module(f"{__name__}.diagnostics")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
