"""medsr: medical image super-resolution with honest evaluation.

``import medsr`` loads nothing heavy; the sub-packages (``medsr.io``, ``medsr.models``, ...)
are imported where they are used.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["__version__"]


@cache
def _version() -> str:
    # importlib.metadata costs 0.05 to 0.2 s (email, zipfile, ...): only when asked
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medsr")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """``medsr.__version__``, looked up on first use (PEP 562)."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'medsr' has no attribute {name!r}")
