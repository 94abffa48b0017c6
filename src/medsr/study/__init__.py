"""Blinded reader studies (mean opinion score): design, store, rendering and analysis.

No HTTP and no models here: the caller supplies the images per (case, method), and the
web app builds its pages on ``Study``. See ``docs/reader-study.md``.

``medsr.study.analysis`` and ``medsr.study.report`` (SciPy, matplotlib) are imported
where they are used, not here.
"""

from __future__ import annotations

from medsr.study.design import (
    CHOICES,
    FLAGS,
    LIKERT_ANCHORS,
    MODES,
    SCALES,
    Preference,
    PreferenceRecord,
    Progress,
    Rating,
    RatingRecord,
    Reader,
    ReaderItem,
    ReaderProgress,
    Saved,
)
from medsr.study.render import (
    auto_window,
    create_study,
    render_png,
    window_from_center_width,
)
from medsr.study.store import Study, StudyInfo

__all__ = [
    "CHOICES",
    "FLAGS",
    "LIKERT_ANCHORS",
    "MODES",
    "SCALES",
    "Preference",
    "PreferenceRecord",
    "Progress",
    "Rating",
    "RatingRecord",
    "Reader",
    "ReaderItem",
    "ReaderProgress",
    "Saved",
    "Study",
    "StudyInfo",
    "auto_window",
    "create_study",
    "render_png",
    "window_from_center_width",
]
