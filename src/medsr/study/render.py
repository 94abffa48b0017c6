"""Rendering study images to 8-bit PNG with a fixed window, and creating a study.

Every method of a case is rendered with the *same* window (given, or computed once from
the case's reference image, by default ``"hr"``), so that readers compare like with like:
a method cannot look better just because its own intensity range was stretched.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medsr import __version__
from medsr.display import Window, to_uint8
from medsr.display import check_window as _check_window
from medsr.errors import ConfigError, FileError
from medsr.study.design import (
    check_mode,
    check_name,
    check_seed,
    design_items,
    new_opaque_id,
)
from medsr.study.store import DB_NAME, IMAGES_DIR, Store, Study, initialise, insert_reader, utc_now

log = logging.getLogger(__name__)

DEFAULT_PERCENTILES: Window = (0.5, 99.5)


def _check_image(array: object, where: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"{where}: expected a numpy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise ConfigError(
            f"{where}: expected a 2-D image (H, W), got shape {array.shape}; "
            "pick one slice of a volume before creating the study"
        )
    if array.size == 0:
        raise ConfigError(f"{where}: the image is empty")
    if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
        raise ConfigError(f"{where}: expected real numbers, got dtype {array.dtype}")
    return array


def window_from_center_width(center: float, width: float) -> Window:
    """The (low, high) display window of a DICOM-style window centre and width,
    e.g. ``(40, 400)`` for a CT soft-tissue window gives ``(-160, 240)``."""
    if not width > 0:
        raise ConfigError(f"window width must be positive, got {width}")
    return center - width / 2, center + width / 2


def auto_window(array: np.ndarray, *, percentiles: Window = DEFAULT_PERCENTILES) -> Window:
    """A display window from percentiles of the finite pixels of ``array`` (any shape).

    A constant image gets a window of width 1 around its value (it renders mid-grey).
    """
    p_low, p_high = percentiles
    if not 0 <= p_low < p_high <= 100:
        raise ConfigError(f"percentiles need 0 <= low < high <= 100, got {percentiles}")
    values = np.asarray(array, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError("cannot compute a window: the image has no finite pixel")
    low, high = (float(v) for v in np.percentile(values, [p_low, p_high]))
    if not high > low:
        return low - 0.5, low + 0.5
    return low, high


def render_png(array: np.ndarray, *, window: Window) -> bytes:
    """An 8-bit greyscale PNG of ``array`` (H, W) displayed with ``window`` = (low, high).

    The PNG carries no text chunks or other metadata (nothing that could unblind a
    reader), and the same input always gives the same bytes.
    """
    from PIL import Image as PILImage

    image = _check_image(array, "render_png")
    pixels = to_uint8(image, window=window)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def case_windows(
    cases: Mapping[str, Mapping[str, np.ndarray]],
    *,
    window: Window | Mapping[str, Window] | None,
    reference_method: str,
    percentiles: Window,
) -> dict[str, Window]:
    """The display window of every case: ``window`` if one (low, high) pair is given, the
    case's entry if a mapping is given, else percentiles of the case's reference image."""
    if window is None:
        out = {}
        for case, images in cases.items():
            if reference_method not in images:
                raise ConfigError(
                    f"case {case!r}: no window given and no {reference_method!r} image to "
                    f"compute one from (methods: {', '.join(sorted(images))}); pass "
                    "window=(low, high) or reference_method=<one of the methods>"
                )
            out[case] = auto_window(images[reference_method], percentiles=percentiles)
        return out
    if isinstance(window, Mapping):
        missing = sorted(set(cases) - set(window))
        if missing:
            raise ConfigError(f"window mapping has no entry for cases {missing}")
        extra = sorted(set(window) - set(cases))
        if extra:
            raise ConfigError(f"window mapping names unknown cases {extra}")
        return {case: _check_window(window[case], f"case {case!r}") for case in cases}
    fixed = _check_window(window, "window")
    return dict.fromkeys(cases, fixed)


def create_study(
    directory: str | Path,
    *,
    cases: Mapping[str, Mapping[str, np.ndarray]],
    readers: int | Sequence[str],
    seed: int,
    window: Window | Mapping[str, Window] | None = None,
    mode: str = "rating",
    title: str = "Reader study",
    pairs: Sequence[tuple[str, str]] | None = None,
    reference_method: str = "hr",
    percentiles: Window = DEFAULT_PERCENTILES,
    allow_changes: bool = True,
) -> Study:
    """Create a reader study in ``directory`` (must not exist, or be empty) and open it.

    ``cases`` maps case name -> method name -> 2-D image ``(H, W)`` in physical units,
    e.g. ``{"knee-017": {"hr": hr, "bicubic": up, "edsr": sr}}``; every case needs the same
    methods. Each image is rendered once to ``images/<random id>.png`` with its case's
    window (see ``case_windows``). ``readers`` is a count (labels ``reader-1`` ...) or a
    list of labels. ``mode`` is ``"rating"`` (1-5 quality and usefulness per image) or
    ``"pairwise"`` (left/right/no preference between two methods of a case; ``pairs``
    restricts which). ``allow_changes=False`` makes a second answer to an item an error
    instead of an update.

    The returned study's ``issued_tokens`` (label -> token) is the only place the reader
    tokens ever exist in clear: hand them out, they cannot be recovered later (only
    replaced with ``Study.reissue_token``).

    The study is built in a temporary sibling folder and renamed into place at the end,
    so a failure leaves no half-made study behind.
    """
    mode = check_mode(mode)
    seed = check_seed(seed)
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"title must be non-empty text, got {title!r}")
    labels = _reader_labels(readers)
    if not isinstance(cases, Mapping):
        raise ConfigError(f"cases must map case name -> method name -> image, got {cases!r}")
    for case, images in cases.items():
        check_name("case", case)
        if not isinstance(images, Mapping) or not images:
            raise ConfigError(f"case {case!r} must map method name -> image, got {images!r}")
        for method, array in images.items():
            check_name("method", method)
            _check_image(array, f"case {case!r}, method {method!r}")
        shapes = {images[m].shape for m in images}
        if len(shapes) > 1:
            log.warning("case %s: methods have different image sizes %s", case, sorted(shapes))
    items = design_items({c: list(m) for c, m in cases.items()}, mode=mode, pairs=pairs)
    windows = case_windows(
        cases, window=window, reference_method=reference_method, percentiles=percentiles
    )

    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileError(target, "exists already and is not an empty folder; choose a new one")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    meta = {
        "title": title.strip(),
        "mode": mode,
        "seed": str(seed),
        "allow_changes": "1" if allow_changes else "0",
        "created_at": utc_now(),
        "medsr_version": __version__,
    }
    if window is None:
        meta["window"] = f"percentiles {percentiles[0]}-{percentiles[1]} of {reference_method!r}"
    try:
        tokens = _build(
            work, cases=cases, items=items, labels=labels, seed=seed, windows=windows, meta=meta
        )
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    study = Study.open(target)
    study._issued.update(tokens)
    log.info("created %s study %s: %d items, %d readers", mode, target, len(items), len(labels))
    return study


def _reader_labels(readers: int | Sequence[str]) -> list[str]:
    if isinstance(readers, bool):
        raise ConfigError(f"readers must be a count or a list of labels, got {readers!r}")
    if isinstance(readers, int):
        if readers < 1:
            raise ConfigError(f"a study needs at least one reader, got readers={readers}")
        return [f"reader-{i}" for i in range(1, readers + 1)]
    if isinstance(readers, str):
        raise ConfigError(f"readers must be a count or a list of labels, got {readers!r}")
    labels = [check_name("reader", label) for label in readers]
    if not labels:
        raise ConfigError("a study needs at least one reader")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"reader labels must be unique, got {labels}")
    return labels


def _build(
    folder: Path,
    *,
    cases: Mapping[str, Mapping[str, np.ndarray]],
    items: list,
    labels: list[str],
    seed: int,
    windows: Mapping[str, Window],
    meta: Mapping[str, str],
) -> dict[str, str]:
    images_dir = folder / IMAGES_DIR
    images_dir.mkdir()
    image_rows = []
    image_id: dict[tuple[str, str], str] = {}
    for case in sorted(cases):
        for method in sorted(cases[case]):
            array = cases[case][method]
            new_id = new_opaque_id()
            (images_dir / f"{new_id}.png").write_bytes(render_png(array, window=windows[case]))
            image_id[case, method] = new_id
            image_rows.append((new_id, case, method, f"{new_id}.png", *array.shape))
    item_ids = [new_opaque_id() for _ in items]
    store = Store(folder / DB_NAME)
    tokens: dict[str, str] = {}

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO cases (case_name, window_low, window_high) VALUES (?, ?, ?)",
            [(case, *windows[case]) for case in sorted(cases)],
        )
        conn.executemany(
            "INSERT INTO images (image_id, case_name, method, file_name, height, width)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            image_rows,
        )
        conn.executemany(
            "INSERT INTO items (item_id, canonical_index, case_name, image_a, image_b)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (
                    item_id,
                    index,
                    item.case,
                    image_id[item.case, item.methods[0]],
                    image_id[item.case, item.methods[1]] if len(item.methods) == 2 else None,
                )
                for index, (item, item_id) in enumerate(zip(items, item_ids, strict=True))
            ],
        )
        for label in labels:
            reader, token = insert_reader(
                conn, items=items, item_ids=item_ids, seed=seed, label=label
            )
            tokens[reader.label] = token

    try:
        initialise(store.connection(), meta)
        store.write(fill)
    finally:
        store.close()
    return tokens
