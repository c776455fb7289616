"""Named, typed, constrained, distribution-carrying parameters on Equinox modules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parax-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
