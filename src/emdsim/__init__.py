"""emdsim: an agent-based simulator of extramedullary disease in multiple myeloma."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("emdsim")
except _metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
