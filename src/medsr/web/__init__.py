"""The ``medsr serve`` web app: upload, background upscaling, comparison view, downloads,
and the reader-study pages. Needs the ``web`` extra (FastAPI, uvicorn, python-multipart).

Modules: ``app`` (``create_app(ServeSettings)``), ``jobs`` (the on-disk job queue),
``limits`` (upload checks), ``static/`` (the pages). Nothing here is imported by
``import medsr``. See docs/web.md.
"""

from __future__ import annotations
