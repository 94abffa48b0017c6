"""medsr: medical image super-resolution with honest evaluation.

``import medsr`` loads nothing heavy; the sub-packages (``medsr.io``, ``medsr.models``, ...)
are imported where they are used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medsr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
