"""DICOM de-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

``deidentify_dataset(ds, state, options)`` applies the profile to one pydicom ``Dataset`` in
place (``deidentified_copy`` leaves the input alone); ``deidentify_file`` and
``deidentify_tree`` read, de-identify and write files atomically. One
``DeidentificationState`` is shared by every dataset of a run, so that the same input UID
always maps to the same new UID and a de-identified series stays one series.

What is done (the full table is ``annex_e.csv`` beside this module, see ``profile_rows()``):

* every attribute of Table E.1-1 gets its Basic Profile action, at any depth inside sequences:
  ``X`` remove, ``Z`` empty (a sequence loses its items), ``D`` dummy value (see
  ``_dummy_value``; a code sequence becomes one dummy code item, any other sequence keeps its
  items, cleaned recursively), ``U`` UID mapped through the state, ``K``/``C`` kept and
  cleaned recursively;
* combined codes are resolved by the attribute's type in the dataset's IOD (looked up by SOP
  Class UID and path of tags in ``annex_e_iod_types.json``): type 1/1C -> ``D`` (``U`` for
  ``X/Z/U*``: the sequence is kept and its UIDs mapped), type 2/2C -> ``Z``, type 3, not in the
  IOD or unknown IOD -> ``X`` (``Z`` for ``Z/D``, which has no ``X``). Type 1C/2C are taken as
  required because an attribute that is present usually meets its condition; this errs
  towards valid output, never towards keeping an original value;
* private attributes (odd groups) are removed unless ``keep_private``; curve (50xx) and
  overlay (60xx) groups are removed unless ``keep_overlays`` (their free-text description,
  label and comment elements are removed even then);
* with ``shift_days`` (the Retain Longitudinal Temporal Information with Modified Dates
  Option): DA and DT values of the table rows marked ``shift`` move by that many days (DT keeps
  its time and timezone), TM values and the timezone offset are kept; Patient's Birth Date,
  Birth Time, GPS Time Stamp and the Context Group Version dates keep their basic actions; a
  value that cannot be parsed, or a DT precise to less than a day, gets the basic action
  instead;
* the file meta information is rebuilt (Media Storage SOP Instance UID mapped like the SOP
  Instance UID, source/sending/receiving AE titles and private information removed,
  implementation class and version set to medsr's) and the preamble zeroed;
* Patient Identity Removed = YES, De-identification Method (text, appended) and
  De-identification Method Code Sequence (DCM 113100, plus 113107 when dates are shifted) and
  Longitudinal Temporal Information Modified (MODIFIED or REMOVED) are set.

Pixel data is never touched. A warning goes into the report (and the log) when Burned In
Annotation is YES, Recognizable Visual Features is YES, or (unless Burned In Annotation says NO)
the modality or SOP class commonly carries burned-in text. No message, log line or error ever
contains an attribute value: only the caller's label (a relative path), tags, keywords and
counts.

UID mapping: ``2.25.<n>`` where ``n`` is the first 128 bits of
``HMAC-SHA256(key, "medsr-deid-uid:" + uid)`` with the RFC 9562 version (8) and variant bits
set, i.e. a UUID written as an integer (PS3.5 B.2). With a secret key the mapping is the same
in every run (keep the key secret: anyone holding it can test guesses of original UIDs);
without one a random 256-bit key is drawn per state. UIDs under the DICOM root
``1.2.840.10008.`` (standard, non-identifying) are left as they are.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Literal

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from medsr import __version__
from medsr.errors import ConfigError, ReadError, UnsupportedFormatError, WriteError
from medsr.io.deflate import check_deflated
from medsr.io.image import MAX_PIXELS
from medsr.tempfiles import create_temp

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "KEY_ENV_VAR",
    "DeidentificationReport",
    "DeidentificationState",
    "DeidentifyOptions",
    "ProfileRow",
    "TreeSummary",
    "deidentified_copy",
    "deidentify_dataset",
    "deidentify_file",
    "deidentify_tree",
    "profile_rows",
    "profile_table",
    "read_dicom",
    "resolve_action",
    "shift_date_text",
    "write_dicom_atomic",
]

Action = Literal["D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"]
ACTIONS: tuple[str, ...] = ("D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

KEY_ENV_VAR = "MEDSR_DEID_KEY"
"""Environment variable holding the secret key of the UID mapping (CLI and callers)."""

DICOM_UID_ROOT = "1.2.840.10008."
# A fixed UUID-derived UID naming medsr as the implementation that wrote the file meta.
MEDSR_IMPLEMENTATION_UID = "2.25.275178131002063643321245890791165878901"
MEDSR_IMPLEMENTATION_VERSION = f"MEDSR_{__version__}"[:16]

CODE_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")

# Modalities whose images commonly carry burned-in text (patient name, dates, institution):
# ultrasound and intravascular ultrasound screens, endoscopy, external-camera and general
# microscopy photographs, ophthalmic photographs, slide microscopy (label images), scanned
# documents and "other". Secondary Capture SOP classes are screenshots by definition.
BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "ES", "XC", "GM", "OP", "SM", "OT", "DOC"})
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# Free-text elements of the repeating groups, removed even when overlays/curves are kept.
_REPEATING_GROUP_TEXT = {
    0x6000: (0x0022, 0x1500, 0x4000),  # Overlay Description, Label, Comments
    0x5000: (0x0022, 0x2500),  # Curve Description, Label
}
_FILE_META_KEPT = (
    "FileMetaInformationVersion",
    "MediaStorageSOPClassUID",
    "MediaStorageSOPInstanceUID",
    "TransferSyntaxUID",
)
_CODE_ITEM_KEYWORDS = ("CodeValue", "LongCodeValue", "URNCodeValue", "CodeMeaning")


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1: ``tag`` is ``None`` for the repeating groups (``pattern``)."""

    pattern: str
    tag: int | None
    keyword: str
    action: str
    modified_dates: str
    name: str


@cache
def profile_rows() -> tuple[ProfileRow, ...]:
    """Every row of the Basic Profile table shipped in ``annex_e.csv`` (several hundred)."""
    text = resources.files("medsr.io").joinpath("annex_e.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = []
    for record in csv.DictReader(io.StringIO("\n".join(lines))):
        pattern = record["tag"]
        tag = None if "x" in pattern else int(pattern, 16)
        rows.append(
            ProfileRow(
                pattern=pattern,
                tag=tag,
                keyword=record["keyword"],
                action=record["action"],
                modified_dates=record["modified_dates"],
                name=record["name"],
            )
        )
    return tuple(rows)


@cache
def profile_table() -> dict[int, ProfileRow]:
    """The rows with a plain tag, keyed by tag (the repeating groups are handled by group)."""
    return {row.tag: row for row in profile_rows() if row.tag is not None}


@cache
def _iod_types() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    text = resources.files("medsr.io").joinpath("annex_e_iod_types.json").read_text("utf-8")
    data = json.loads(text)
    return data["sop_classes"], data["types"]


def resolve_action(action: str, sop_class_uid: str | None, path: tuple[int, ...]) -> str:
    """Resolve a (possibly combined) action code to one of X, Z, D, U, K, C.

    ``path`` is the tag of the attribute preceded by the tags of the sequences that hold it,
    from the top-level dataset. See the module docstring for the rule.
    """
    if action not in ACTIONS:
        raise ConfigError(f"unknown action code {action!r}; allowed: {', '.join(ACTIONS)}")
    if "/" not in action:
        return action
    sop_classes, types = _iod_types()
    ciod = sop_classes.get(str(sop_class_uid or ""))
    level = None
    if ciod is not None:
        level = types.get(ciod, {}).get(":".join(f"{tag:08X}" for tag in path))
    if level == 1:
        return "U" if action == "X/Z/U*" else "D"
    if level == 2:
        return "Z"
    return "Z" if action == "Z/D" else "X"


@dataclass(frozen=True)
class DeidentifyOptions:
    """Options of the profile. ``shift_days``: move dates by this many days (non-zero, at
    most 100 years either way) instead of removing them; ``keep_private``: keep private
    attributes (they may hold identifiers); ``keep_overlays``: keep curve and overlay groups
    (overlays may hold burned-in style text)."""

    shift_days: int | None = None
    keep_private: bool = False
    keep_overlays: bool = False

    def __post_init__(self) -> None:
        days = self.shift_days
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or days == 0 or abs(days) > 36525
        ):
            raise ConfigError(
                f"shift_days={days!r} is invalid: give a non-zero whole number of days "
                "between -36525 and 36525, or None to remove dates"
            )


class DeidentificationState:
    """What one de-identification run shares between datasets: the UID mapping.

    ``key`` (str or bytes) makes the mapping reproducible across runs; without it a random key
    is drawn, so the mapping is consistent within this state only. Thread-safe: the mapping
    is a pure function of the key, the cache only saves time.
    """

    def __init__(self, *, key: str | bytes | None = None) -> None:
        if key is None:
            self._key = secrets.token_bytes(32)
            self.keyed = False
        else:
            raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
            if not raw:
                raise ConfigError("the de-identification key is empty; give a secret or none")
            self._key = raw
            self.keyed = True
        self._uids: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return f"DeidentificationState(keyed={self.keyed}, uids={len(self._uids)})"

    @property
    def uid_count(self) -> int:
        """How many distinct input UIDs were mapped so far."""
        return len(self._uids)

    def map_uid(self, uid: str) -> str:
        """The replacement of ``uid`` (same input, same output for this state's key)."""
        uid = str(uid).strip().rstrip("\x00")
        if uid.startswith(DICOM_UID_ROOT):
            return uid
        mapped = self._uids.get(uid)
        if mapped is None:
            digest = hmac.new(
                self._key, b"medsr-deid-uid:" + uid.encode("utf-8", "replace"), hashlib.sha256
            ).digest()
            value = bytearray(digest[:16])
            value[6] = (value[6] & 0x0F) | 0x80  # version 8 (custom), RFC 9562
            value[8] = (value[8] & 0x3F) | 0x80  # RFC variant
            mapped = f"2.25.{uuid.UUID(bytes=bytes(value)).int}"
            self._uids[uid] = mapped
        return mapped


@dataclass
class DeidentificationReport:
    """What happened to one dataset. Holds counts and warnings, never attribute values."""

    label: str = ""
    removed: int = 0
    emptied: int = 0
    dummied: int = 0
    uids_replaced: int = 0
    dates_shifted: int = 0
    private_removed: int = 0
    repeating_groups_removed: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        text = f"{self.label}: {message}" if self.label else message
        self.warnings.append(text)
        logger.warning("%s", text)


@dataclass
class _Context:
    state: DeidentificationState
    options: DeidentifyOptions
    report: DeidentificationReport
    sop_class_uid: str | None


def deidentify_dataset(
    ds: Dataset,
    state: DeidentificationState,
    options: DeidentifyOptions | None = None,
    *,
    label: str = "",
) -> DeidentificationReport:
    """Apply the Basic Profile to ``ds`` (and its ``file_meta``) in place.

    ``label`` names the dataset in warnings (use a path relative to the input root, never an
    identifier). Pixel data is not touched.
    """
    options = options or DeidentifyOptions()
    report = DeidentificationReport(label=label)
    sop_class = ds.get("SOPClassUID")
    ctx = _Context(state, options, report, str(sop_class) if sop_class else None)
    _check_burned_in(ds, ctx)
    with _quiet_pydicom():
        _clean(ds, ctx, ())
        _mark_deidentified(ds, ctx)
        _rebuild_file_meta(ds, ctx)
    if hasattr(ds, "preamble") and ds.preamble is not None:
        ds.preamble = b"\x00" * 128
    logger.debug(
        "%s: removed %d, emptied %d, dummy %d, UIDs %d, dates shifted %d, private %d",
        label or "dataset",
        report.removed,
        report.emptied,
        report.dummied,
        report.uids_replaced,
        report.dates_shifted,
        report.private_removed,
    )
    return report


def deidentified_copy(
    ds: Dataset,
    state: DeidentificationState,
    options: DeidentifyOptions | None = None,
    *,
    label: str = "",
) -> tuple[Dataset, DeidentificationReport]:
    """Like ``deidentify_dataset`` but on a deep copy; ``ds`` is left as it was."""
    clone = copy.deepcopy(ds)
    return clone, deidentify_dataset(clone, state, options, label=label)


# ----------------------------------------------------------------------------- walking


def _clean(ds: Dataset, ctx: _Context, parents: tuple[int, ...]) -> None:
    table = profile_table()
    for tag in list(ds.keys()):
        tag = Tag(tag)
        if tag.is_private:
            if not ctx.options.keep_private:
                del ds[tag]
                ctx.report.private_removed += 1
            continue
        if tag.group == 0x0000 and not parents:
            # command elements do not belong in a stored instance (and cannot be written)
            del ds[tag]
            ctx.report.removed += 1
            continue
        if _in_repeating_group(tag):
            _clean_repeating(ds, tag, ctx)
            continue
        elem = ds[tag]
        row = table.get(int(tag))
        if row is None:
            if elem.VR == "SQ":
                _clean_items(elem, ctx, (*parents, int(tag)))
            continue
        _apply(ds, elem, row, ctx, (*parents, int(tag)))


def _clean_items(elem: DataElement, ctx: _Context, path: tuple[int, ...]) -> None:
    for item in elem.value or ():
        _clean(item, ctx, path)


def _in_repeating_group(tag: BaseTag) -> bool:
    return (tag.group & 0xFF00) in (0x5000, 0x6000) and tag.group % 2 == 0


def _clean_repeating(ds: Dataset, tag: BaseTag, ctx: _Context) -> None:
    base = tag.group & 0xFF00
    if ctx.options.keep_overlays and tag.element not in _REPEATING_GROUP_TEXT[base]:
        return
    del ds[tag]
    ctx.report.repeating_groups_removed += 1


def _apply(
    ds: Dataset, elem: DataElement, row: ProfileRow, ctx: _Context, path: tuple[int, ...]
) -> None:
    if ctx.options.shift_days is not None and row.modified_dates:
        if row.modified_dates == "keep":
            return
        if elem.VR in ("DA", "DT") and _shift_element(elem, ctx.options.shift_days):
            ctx.report.dates_shifted += 1
            return
    action = resolve_action(row.action, ctx.sop_class_uid, path)
    if action == "X":
        del ds[elem.tag]
        ctx.report.removed += 1
    elif action == "Z":
        _empty(elem)
        ctx.report.emptied += 1
    elif action == "D":
        _dummy(elem, ctx, path)
    elif action == "U":
        if elem.VR == "SQ":
            _clean_items(elem, ctx, path)
        else:
            _map_uids(elem, ctx)
    elif elem.VR == "SQ":  # K or C: keep, and clean what the sequence holds
        _clean_items(elem, ctx, path)
    elif action == "C":
        _dummy(elem, ctx, path)


def _empty(elem: DataElement) -> None:
    elem.value = Sequence() if elem.VR == "SQ" else None


def _map_uids(elem: DataElement, ctx: _Context) -> None:
    value = elem.value
    if value in (None, "", b""):
        return
    if isinstance(value, bytes):  # UI read as raw bytes under an unknown VR
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and "\\" in value:
        value = value.split("\\")
    if isinstance(value, str | pydicom.uid.UID):
        elem.value = ctx.state.map_uid(str(value))
    else:
        elem.value = [ctx.state.map_uid(str(v)) for v in value]
    ctx.report.uids_replaced += 1


def _dummy(elem: DataElement, ctx: _Context, path: tuple[int, ...]) -> None:
    if elem.VR == "SQ":
        items = list(elem.value or ())
        if any(any(k in item for k in _CODE_ITEM_KEYWORDS) for item in items):
            elem.value = Sequence([_dummy_code_item()])
        else:
            _clean_items(elem, ctx, path)
        ctx.report.dummied += 1
        return
    if elem.VR == "UI":
        _map_uids(elem, ctx)
        if elem.value in (None, ""):
            elem.value = ctx.state.map_uid(f"medsr-dummy:{elem.tag:08X}")
        return
    elem.value = _dummy_value(elem.VR)
    ctx.report.dummied += 1


def _dummy_code_item() -> Dataset:
    item = Dataset()
    item.CodeValue = "ANONYMIZED"
    item.CodingSchemeDesignator = "99MEDSR"
    item.CodeMeaning = "Anonymized"
    return item


def _dummy_value(vr: str) -> object:
    """A non-identifying, non-empty value valid for ``vr`` (the D action)."""
    if vr == "DA":
        return "19000101"
    if vr == "TM":
        return "000000.00"
    if vr == "DT":
        return "19000101000000.00"
    if vr == "PN":
        return "ANONYMIZED"
    if vr == "AS":
        return "000Y"
    if vr in ("DS", "IS"):
        return "0"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "AT"):
        return 0
    if vr in ("FL", "FD"):
        return 0.0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    if vr == "CS":
        return "ANONYMIZED"
    return "ANONYMIZED"  # AE LO LT SH ST UC UR UT


# ----------------------------------------------------------------------------- dates

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})(\d{2})(.*)$")


def _shift_element(elem: DataElement, days: int) -> bool:
    """Shift every value of a DA/DT element; False (element untouched) if any cannot be."""
    value = elem.value
    if value in (None, ""):
        return False
    values = [value] if isinstance(value, str | bytes) or not hasattr(value, "__iter__") else value
    shifted = []
    for v in values:
        new = _shift_text(str(v).strip(), elem.VR, days)
        if new is None:
            return False
        shifted.append(new)
    elem.value = shifted[0] if len(shifted) == 1 else shifted
    return True


def _shift_text(text: str, vr: str, days: int) -> str | None:
    match = (_DA if vr == "DA" else _DT).match(text)
    if match is None:
        return None
    try:
        day = dt.date(int(match[1]), int(match[2]), int(match[3])) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    rest = match[4] if vr == "DT" else ""
    return f"{day:%Y%m%d}{rest}"


def shift_date_text(text: str, days: int, *, vr: Literal["DA", "DT"] = "DA") -> str | None:
    """Shift one DA (``YYYYMMDD``) or DT value by ``days``; ``None`` if it cannot be shifted."""
    return _shift_text(text, vr, days)


# ----------------------------------------------------------------------------- marks


def _mark_deidentified(ds: Dataset, ctx: _Context) -> None:
    options = ctx.options
    ds.PatientIdentityRemoved = "YES"
    methods = [f"medsr {__version__}: PS3.15 E.1-1 Basic Profile"[:64]]
    if options.shift_days is not None:
        methods.append("dates shifted by a fixed secret offset")
    if options.keep_private:
        methods.append("private attributes retained")
    if options.keep_overlays:
        methods.append("curves and overlays retained")
    previous = ds.get("DeidentificationMethod")
    if previous not in (None, ""):
        # an earlier de-identification keeps its description; ours is appended
        old = [str(previous)] if isinstance(previous, str) else [str(v) for v in previous]
        methods = [m for m in old if m not in methods] + methods
    ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
    codes = [CODE_BASIC_PROFILE]
    if options.shift_days is not None:
        codes.append(CODE_MODIFIED_DATES)
    sequence = ds.get("DeidentificationMethodCodeSequence") or Sequence()
    present = {
        (str(item.get("CodeValue", "")), str(item.get("CodingSchemeDesignator", "")))
        for item in sequence
    }
    for value, meaning in codes:
        if (value, "DCM") not in present:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            sequence.append(item)
    ds.DeidentificationMethodCodeSequence = sequence
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED" if options.shift_days is not None else "REMOVED"
    )


def _rebuild_file_meta(ds: Dataset, ctx: _Context) -> None:
    old = getattr(ds, "file_meta", None)
    if old is None:
        return
    meta = FileMetaDataset()
    for keyword in _FILE_META_KEPT:
        if keyword in old:
            setattr(meta, keyword, old[keyword].value)
    if "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ctx.state.map_uid(str(meta.MediaStorageSOPInstanceUID))
        ctx.report.uids_replaced += 1
    meta.ImplementationClassUID = MEDSR_IMPLEMENTATION_UID
    meta.ImplementationVersionName = MEDSR_IMPLEMENTATION_VERSION
    ds.file_meta = meta


def _check_burned_in(ds: Dataset, ctx: _Context) -> None:
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = ctx.sop_class_uid or ""
    if burned == "YES":
        ctx.report.warn(
            "Burned In Annotation is YES: text in the pixel data is not removed; check the "
            "images before sharing them"
        )
    elif burned != "NO" and (
        modality in BURNED_IN_MODALITIES or sop_class.startswith(SECONDARY_CAPTURE_PREFIX)
    ):
        kind = f"modality {modality}" if modality in BURNED_IN_MODALITIES else "secondary capture"
        ctx.report.warn(
            f"{kind} images often carry burned-in text (Burned In Annotation is "
            f"{'absent' if not burned else 'not NO'}); pixel data is not cleaned; check the "
            "images before sharing them"
        )
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        ctx.report.warn(
            "Recognizable Visual Features is YES (e.g. a face); pixel data is not cleaned"
        )


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation, whose warnings and errors quote values.

    Changes process-wide pydicom settings for the duration (not thread-safe: run one file at a
    time per process, as the CLI does).
    """
    settings = pydicom_config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    settings.reading_validation_mode = pydicom_config.IGNORE
    settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


# ----------------------------------------------------------------------------- files


def read_dicom(path: Path | BinaryIO, *, label: str) -> Dataset:
    """Read a DICOM file quietly; raise ``UnsupportedFormatError`` if it is not DICOM and
    ``ReadError`` if it is broken. Messages name ``label`` and the error type only.

    A file without the 128-byte preamble and "DICM" prefix (older files) is accepted when,
    read without them, it holds a SOP Class UID and a SOP Instance UID.
    """
    # A deflated file is inflated in chunks and refused if it holds more than its image needs,
    # before pydicom inflates all of it into memory.
    check_deflated(path, max_pixels=MAX_PIXELS, label=label)
    with _quiet_pydicom():
        try:
            rewind = getattr(path, "seek", None)  # an open file: each attempt from its start
            try:
                if rewind is not None:
                    rewind(0)
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                if rewind is not None:
                    rewind(0)
                ds = pydicom.dcmread(path, force=True)
                if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                    raise
            _check_not_truncated(ds, label)
            meta = getattr(ds, "file_meta", None) or Dataset()
            if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in meta:
                raise ReadError(label, "holds no SOP Class UID: not a DICOM SOP instance")
            # parse every element now, so that a broken file fails here, not half-written
            for _ in ds.iterall():
                pass
        except ReadError:
            raise
        except InvalidDicomError as error:
            raise UnsupportedFormatError(label, "not a DICOM file") from error
        except Exception as error:
            raise ReadError(label, f"cannot be read as DICOM ({type(error).__name__})") from error
    return ds


def _check_not_truncated(ds: Dataset, label: str) -> None:
    # pydicom reads a file cut inside an element without complaint; the raw element then
    # holds fewer bytes than its header declares (a cut between elements goes unnoticed)
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != 0xFFFFFFFF
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            raise ReadError(label, f"truncated: element {Tag(tag)} is cut short")


def _complete_file_meta(ds: Dataset) -> None:
    """Give a dataset read without file meta information the elements a DICOM file needs."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit is None:
            implicit, little = True, True
        meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
            if little
            else pydicom.uid.ExplicitVRBigEndian
        )
    if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "MediaStorageSOPInstanceUID" not in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def write_dicom_atomic(ds: Dataset, dst: Path, *, label: str) -> None:
    """Write ``ds`` to ``dst`` through a temporary file in the same folder and a rename."""
    try:
        tmp = create_temp(dst, suffix=".part")  # the mode of any new file (umask)
    except WriteError as error:  # named by its label: paths may hold identifiers
        cause = error.problem.rsplit(": ", 1)[-1]
        raise WriteError(label, f"cannot be written ({cause})") from None
    try:
        with open(tmp, "wb") as handle, _quiet_pydicom():
            pydicom.dcmwrite(handle, ds, enforce_file_format=True)
        os.replace(tmp, dst)
    except Exception as error:
        tmp.unlink(missing_ok=True)
        raise WriteError(label, f"cannot be written ({type(error).__name__})") from error


def deidentify_file(
    src: str | Path | BinaryIO,
    dst: str | Path,
    state: DeidentificationState,
    options: DeidentifyOptions | None = None,
    *,
    label: str | None = None,
) -> DeidentificationReport:
    """Read ``src`` (a path, or an open binary file read from its start), de-identify it and
    write ``dst`` atomically. ``label`` (default: the file name) names the file in warnings
    and errors."""
    dst = Path(dst)
    if isinstance(src, str | Path):
        src = Path(src)
        label = label if label is not None else src.name
    label = label if label is not None else "the file"
    ds = read_dicom(src, label=label)
    media_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if media_class == MEDIA_STORAGE_DIRECTORY:
        raise UnsupportedFormatError(label, "a DICOMDIR index; rebuild it from the output")
    _complete_file_meta(ds)
    report = deidentify_dataset(ds, state, options, label=label)
    write_dicom_atomic(ds, dst, label=label)
    return report


@dataclass
class TreeSummary:
    """The outcome of ``deidentify_tree``: relative paths, counts and warnings."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def deidentify_tree(
    src: str | Path,
    dst: str | Path,
    state: DeidentificationState,
    options: DeidentifyOptions | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> TreeSummary:
    """De-identify every DICOM file under the folder ``src`` into the same tree under ``dst``.

    Files that are not DICOM (or are DICOMDIR indexes) are skipped and listed; files that fail
    are listed and the run goes on. Paths in the summary, warnings and errors are relative to
    ``src``. ``progress(index, total, relative_path)`` is called after each file.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ConfigError(f"{src.name}: not a folder")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if dst_abs == src_abs or src_abs in dst_abs.parents:
        raise ConfigError("the output folder must not be the input folder or inside it")
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"the output {dst.name} exists and is not a folder")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    summary = TreeSummary()
    for index, path in enumerate(files, start=1):
        rel = path.relative_to(src).as_posix()
        try:
            report = deidentify_file(path, dst / rel, state, options, label=rel)
        except UnsupportedFormatError as error:
            summary.skipped.append(rel)
            logger.info("skipped %s: %s", rel, error.problem)
        except (ReadError, WriteError) as error:
            summary.failed.append(rel)
            logger.error("failed %s: %s", rel, error.problem)
        else:
            summary.done.append(rel)
            summary.warnings.extend(report.warnings)
        if progress is not None:
            progress(index, len(files), rel)
    return summary
