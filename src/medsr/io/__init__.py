"""Medical image input/output with geometry: ``read(path) -> Image`` and ``write(image, path)``."""

from __future__ import annotations

from medsr.io.image import Image, Source
from medsr.io.read import READABLE, read
from medsr.io.write import WRITABLE, write

__all__ = ["READABLE", "WRITABLE", "Image", "Source", "read", "write"]
