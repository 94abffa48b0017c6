"""Medical image input/output with geometry: ``read(path) -> Image`` and ``write(image, path)``."""

from __future__ import annotations

from medsr.io.image import Image, Source

__all__ = ["Image", "Source"]
