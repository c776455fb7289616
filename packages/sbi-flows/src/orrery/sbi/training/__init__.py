"""Training machinery for amortized posteriors: `SBITrainer` and checkpoints."""

from ._checkpoint import CHECKPOINT_BACKENDS, list_checkpoints, load_latest_checkpoint
from .trainer import SBITrainer, TrainingArtifacts

__all__ = [
    "CHECKPOINT_BACKENDS",
    "SBITrainer",
    "TrainingArtifacts",
    "list_checkpoints",
    "load_latest_checkpoint",
]
