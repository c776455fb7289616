"""The Cannon and the Lux latent-variable model for stellar spectra and other multi-output data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lux-models")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from . import datasets
from .cannon import Cannon, LabelInference

__all__ = [
    "Cannon",
    "LabelInference",
    "__version__",
    "datasets",
]
