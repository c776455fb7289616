"""The installed distribution's version, for the package root and its modules alike.

Modules that record the version (in saved artifacts) import it from here, not
from the package root, so no module imports the package that imports it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lux-models")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
