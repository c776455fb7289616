"""PyTorch stochastic surrogate models with variational parameter groups."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("polymix-torch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
