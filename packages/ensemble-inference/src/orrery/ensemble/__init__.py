"""Ensembles of MAP/MLE and SVI fits, vmapped and sharded over a member axis."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ensemble-inference")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
