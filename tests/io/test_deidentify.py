"""De-identification: the E.1-1 table applied to real DICOM files, UIDs, dates, validity."""

from __future__ import annotations

import copy
import datetime as dt
import io
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsr.errors import ConfigError, ReadError, UnsupportedFormatError
from medsr.io.deidentify import (
    ACTIONS,
    DeidentificationState,
    DeidentifyOptions,
    deidentified_copy,
    deidentify_dataset,
    deidentify_file,
    deidentify_tree,
    profile_rows,
    profile_table,
    read_dicom,
    resolve_action,
    shift_date_text,
)

REAL_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR2_UNCR.dcm",
    "RG1_UNCR.dcm",
    "US1_UNCR.dcm",
    "eCT_Supplemental.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "rtstruct.dcm",
    "test-SR.dcm",
]
UID_PREFIX = "1.2.826.0.1.3680043.10.999."
MARK = "QXZLEAK"  # every injected text value contains it, so a leak is easy to find


@pytest.fixture(params=[*REAL_FILES, "chest-ct"])
def real_path(request, dicom_file) -> Path:
    if request.param == "chest-ct":
        shared = request.getfixturevalue("shared_data")
        files = sorted((shared / "chest-ct" / "A0001").glob("*.dcm"))
        if not files:
            pytest.skip("chest-ct/A0001 is absent")
        return files[0]
    return dicom_file(request.param)


def _vr(tag: int, keyword: str) -> str:
    if dictionary_has_tag(tag):
        return str(dictionary_VR(tag)).split(" or ")[0]
    return "SQ" if keyword.endswith("Sequence") else "LO"


def _identifying_value(vr: str, index: int) -> object:
    """A valid value for ``vr`` that can be recognised if it survives."""
    values: dict[str, object] = {
        "DA": "19230417",
        "DT": "19230417101112.5",
        "TM": "101112",
        "PN": f"{MARK}^Person{index}",
        "UI": f"{UID_PREFIX}{index}",
        "AS": "042Y",
        "DS": "7",
        "IS": "7",
        "US": 7,
        "SS": 7,
        "UL": 7,
        "SL": 7,
        "FL": 7.0,
        "FD": 7.0,
        "AT": 0x00100010,
        "CS": f"{MARK}{index}"[:16],
        "SH": f"{MARK}{index}"[:16],
        "AE": f"{MARK}{index}"[:16],
        "UR": f"http://{MARK.lower()}.invalid/{index}",
    }
    if vr in values:
        return values[vr]
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return f"{MARK}{index:04d}".encode()
    return f"{MARK} value {index}"  # LO LT ST UT UC


def _nested_item(index: int) -> Dataset:
    item = Dataset()
    item.PatientName = f"{MARK}^Nested{index}"
    item.ReferencedSOPInstanceUID = f"{UID_PREFIX}1000{index}"
    return item


def _injectable_rows():
    return [r for r in profile_rows() if r.tag is not None and r.tag >> 16 != 0x0002]


def _inject(ds: Dataset, rows) -> dict[int, object]:
    """Set every row's attribute on ``ds``; returns the injected value by tag."""
    injected: dict[int, object] = {}
    for index, row in enumerate(rows):
        vr = _vr(row.tag, row.keyword)
        if vr == "SQ":
            value: object = Sequence([_nested_item(index)])
        elif row.keyword == "TimezoneOffsetFromUTC":
            value = "+0100"  # kept when dates are shifted, so give it a real offset
        else:
            value = _identifying_value(vr, index)
        ds.add(DataElement(row.tag, vr, value))
        injected[row.tag] = value
    return injected


def _is_empty(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return len(elem.value) == 0
    return elem.VM == 0 or elem.value in (None, "", b"")


def _check_row(ds, row, value, state, path, sop_class, options) -> None:
    tag = row.tag
    where = f"{row.keyword} ({row.pattern}) {row.action} at {[f'{t:08X}' for t in path]}"
    vr = _vr(tag, row.keyword)
    if options.shift_days is not None and row.modified_dates == "keep":
        assert ds[tag].value == value, where
        return
    if options.shift_days is not None and row.modified_dates == "shift" and vr in ("DA", "DT"):
        assert ds[tag].value == shift_date_text(value, options.shift_days, vr=vr), where
        return
    expected = resolve_action(row.action, sop_class, path)
    if len(path) == 1 and tag >> 16 == 0x0000:
        expected = "X"  # command elements are dropped from a stored instance
    if expected == "X":
        assert tag not in ds, where
        return
    assert tag in ds, where
    elem = ds[tag]
    if expected == "Z":
        assert _is_empty(elem), where
    elif expected == "U" and vr == "UI":
        assert elem.value == state.map_uid(value), where
        assert elem.value.startswith("2.25."), where
    elif vr == "SQ":  # D, U (X/Z/U*), K: items kept and cleaned, or one dummy code item
        assert len(elem.value) >= 1, where
        for item in elem.value:
            if "PatientName" in item:
                assert _is_empty(item["PatientName"]), where
            if "ReferencedSOPInstanceUID" in item:
                assert item.ReferencedSOPInstanceUID.startswith("2.25."), where
    else:
        assert expected == "D", where
        assert not _is_empty(elem), where
        assert elem.value != value, where


# ---------------------------------------------------------------------------- the table


def test_table_covers_the_whole_basic_profile():
    rows = profile_rows()
    assert len(rows) >= 600
    patterns = [r.pattern for r in rows]
    assert len(set(patterns)) == len(patterns)
    assert {r.action for r in rows} <= set(ACTIONS)
    assert {"50xxxxxx", "60xx3000", "60xx4000"} <= set(patterns)
    table = profile_table()
    spot = {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "AccessionNumber": "Z",
        "StudyInstanceUID": "U",
        "SOPInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "InstitutionName": "X/Z/D",
        "ReferencedImageSequence": "X/Z/U*",
        "StudyDate": "Z",
        "SeriesDate": "X/D",
        "ContentDate": "Z/D",
        "OtherPatientIDs": "X",
        "PatientAge": "X",
        "DeviceSerialNumber": "X/Z/D",
        "ContentSequence": "D",
    }
    by_keyword = {r.keyword: r.action for r in table.values()}
    for keyword, action in spot.items():
        assert by_keyword[keyword] == action, keyword
    for row in table.values():
        if dictionary_has_tag(row.tag):
            assert dictionary_keyword(row.tag) == row.keyword
        assert row.modified_dates in ("", "shift", "keep")
        if row.modified_dates == "shift":
            assert _vr(row.tag, row.keyword) in ("DA", "DT")
    assert table[0x00100030].modified_dates == ""  # birth date is never shifted


@pytest.mark.parametrize(
    ("action", "sop_class", "path", "expected"),
    [
        ("X/Z/D", "1.2.840.10008.5.1.4.1.1.2", (0x00080080,), "X"),  # CT: Institution Name 3
        ("X/Z/D", "1.2.840.10008.5.1.4.1.1.2.1", (0x00181000,), "D"),  # enhanced CT: type 1
        ("Z/D", "1.2.840.10008.5.1.4.1.1.2", (0x00080023,), "Z"),  # CT Content Date: 2C
        ("Z/D", "1.2.840.10008.5.1.4.1.1.2.1", (0x00080023,), "D"),  # enhanced CT: 1
        ("X/Z/U*", "1.2.840.10008.5.1.4.1.1.2", (0x00081140,), "X"),
        ("X/Z/U*", "1.2.840.10008.5.1.4.1.1.2.1", (0x52009230, 0x00081140), "Z"),
        ("Z/D", "9.9.9", (0x00080023,), "Z"),  # unknown IOD: conservative
        ("X/D", "9.9.9", (0x00081030,), "X"),
        ("D", None, (0x00080080,), "D"),
    ],
)
def test_combined_codes_are_resolved_by_the_iod_type(action, sop_class, path, expected):
    assert resolve_action(action, sop_class, path) == expected


def test_unknown_action_code_is_rejected():
    with pytest.raises(ConfigError, match="allowed"):
        resolve_action("Q", None, (0x00100010,))


# ---------------------------------------------------------------------------- table-driven


@pytest.mark.parametrize("shift", [None, -400])
def test_every_row_is_applied_at_top_level(real_path, shift):
    ds = read_dicom(real_path, label=real_path.name)
    rows = _injectable_rows()
    injected = _inject(ds, rows)
    sop_class = str(ds.SOPClassUID)
    state = DeidentificationState(key="table-test")
    options = DeidentifyOptions(shift_days=shift)
    deidentify_dataset(ds, state, options, label=real_path.name)
    for row in rows:
        _check_row(ds, row, injected[row.tag], state, (row.tag,), sop_class, options)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    assert MARK.encode() not in buffer.getvalue()
    assert UID_PREFIX.encode() not in buffer.getvalue()


def test_every_row_is_applied_inside_sequences(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    rows = _injectable_rows()
    outer = Dataset()
    injected = _inject(outer, rows)
    inner = Dataset()
    _inject(inner, rows)
    outer.add(DataElement(0x0040A170, "SQ", Sequence([inner])))  # Purpose of Reference Code Seq
    ds.ContributingEquipmentSequence = Sequence([outer])  # not in the table: recursed into
    state = DeidentificationState()
    deidentify_dataset(ds, state)
    item = ds.ContributingEquipmentSequence[0]
    for row in rows:
        path = (0x0018A001, row.tag)
        _check_row(
            item, row, injected[row.tag], state, path, str(ds.SOPClassUID), DeidentifyOptions()
        )
    deeper = item[0x0040A170].value[0]
    assert "PatientName" in deeper and _is_empty(deeper["PatientName"])
    assert "OtherPatientIDs" not in deeper
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    assert MARK.encode() not in buffer.getvalue()


# ---------------------------------------------------------------------------- validity


def _dciodvfy_errors(path: Path) -> set[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    # UIDs change by design; compare the messages without them
    return {
        re.sub(r"UID \d[\d.]*", "UID <UID>", re.sub(r"\b\d+(\.\d+){3,}\b", "<UID>", line.strip()))
        for line in lines
        if line.startswith("Error")
    }


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) absent")
@pytest.mark.parametrize("shift", [None, 30])
def test_dciodvfy_finds_no_new_errors(real_path, tmp_path, shift):
    out = tmp_path / "out.dcm"
    deidentify_file(real_path, out, DeidentificationState(), DeidentifyOptions(shift_days=shift))
    assert _dciodvfy_errors(out) - _dciodvfy_errors(real_path) == set()


def test_pixel_data_and_geometry_untouched(real_path, tmp_path):
    out = tmp_path / "out.dcm"
    deidentify_file(real_path, out, DeidentificationState())
    before, after = read_dicom(real_path, label="in"), pydicom.dcmread(out)
    assert after.get("PixelData") == before.get("PixelData")
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows"):
        assert after.get(keyword) == before.get(keyword)
    if "TransferSyntaxUID" in before.file_meta:
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert after.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in after.DeidentificationMethodCodeSequence]
    assert "113100" in codes
    if "DeidentificationMethodCodeSequence" not in before:
        assert "113107" not in codes
    assert after.LongitudinalTemporalInformationModified == "REMOVED"
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.SOPInstanceUID != before.SOPInstanceUID
    assert after.preamble == b"\x00" * 128


def test_series_stays_one_series(shared_data, tmp_path):
    src = shared_data / "chest-ct" / "A0001"
    files = sorted(src.glob("*.dcm"))
    if not files:
        pytest.skip("chest-ct/A0001 is absent")
    state = DeidentificationState()
    summary = deidentify_tree(src, tmp_path / "out", state, DeidentifyOptions(shift_days=-3))
    assert summary.ok and len(summary.done) == len(files) and not summary.skipped
    before = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    after = [pydicom.dcmread(tmp_path / "out" / f.name, stop_before_pixels=True) for f in files]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        new = {str(ds.get(keyword)) for ds in after}
        assert len(new) == 1
        assert new != {str(ds.get(keyword)) for ds in before}
        assert new == {state.map_uid(str(before[0].get(keyword)))}
    sop = [str(ds.SOPInstanceUID) for ds in after]
    assert len(set(sop)) == len(files)
    assert sop == [state.map_uid(str(ds.SOPInstanceUID)) for ds in before]
    assert sop == [str(ds.file_meta.MediaStorageSOPInstanceUID) for ds in after]
    for b, a in zip(before, after, strict=True):
        assert a.ImagePositionPatient == b.ImagePositionPatient
        assert a.ImageOrientationPatient == b.ImageOrientationPatient
        assert a.InstanceNumber == b.InstanceNumber
        old = dt.datetime.strptime(b.StudyDate, "%Y%m%d")
        assert dt.datetime.strptime(a.StudyDate, "%Y%m%d") == old - dt.timedelta(days=3)
        assert a.StudyTime == b.StudyTime  # a whole-day shift keeps times
        assert "PatientBirthDate" not in a or not a.PatientBirthDate


# ---------------------------------------------------------------------------- UIDs


def test_uid_mapping_is_consistent_and_keyed():
    uids = ["1.2.3.4", "1.2.3.4.5", "1.3.6.1.4.1.9590.100.1.2.1"]
    a, b = DeidentificationState(key="secret"), DeidentificationState(key="secret")
    other = DeidentificationState(key="another secret")
    assert [a.map_uid(u) for u in uids] == [b.map_uid(u) for u in uids]
    assert a.map_uid("1.2.3.4") == a.map_uid("1.2.3.4")
    assert all(a.map_uid(u) != other.map_uid(u) for u in uids)
    assert len({a.map_uid(u) for u in uids}) == len(uids)
    r1, r2 = DeidentificationState(), DeidentificationState()
    assert r1.map_uid("1.2.3.4") != r2.map_uid("1.2.3.4")  # random key per state
    assert a.map_uid("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"  # standard UIDs kept
    for u in uids:
        new = a.map_uid(u)
        assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", new) and len(new) <= 64
        assert int(new[5:]) < 2**128
    assert "secret" not in repr(a)


def test_key_reproduces_the_mapping_across_files(dicom_file, tmp_path):
    src = dicom_file("CT_small.dcm")
    outs = []
    for run, key in enumerate(["k1", "k1", "k2"]):
        out = tmp_path / f"{run}.dcm"
        deidentify_file(src, out, DeidentificationState(key=key))
        outs.append(pydicom.dcmread(out))
    assert outs[0].StudyInstanceUID == outs[1].StudyInstanceUID
    assert outs[0].SOPInstanceUID == outs[1].SOPInstanceUID
    assert outs[0].StudyInstanceUID != outs[2].StudyInstanceUID


def test_empty_key_is_rejected():
    with pytest.raises(ConfigError):
        DeidentificationState(key="")


# ---------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "days", "vr", "expected"),
    [
        ("20240301", -1, "DA", "20240229"),
        ("20231231", 1, "DA", "20240101"),
        ("20000229", 366, "DA", "20010301"),
        ("20240301101112.123456+0100", -1, "DT", "20240229101112.123456+0100"),
        ("20240301", 36525, "DA", "21240302"),
        ("2024", 3, "DT", None),  # less precise than a day: not shifted
        ("2024-03-01", 3, "DA", None),
        ("20241301", 3, "DA", None),
    ],
)
def test_shift_date_text(text, days, vr, expected):
    assert shift_date_text(text, days, vr=vr) == expected


def test_unshiftable_dates_get_the_basic_action(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    # values pydicom would warn about on assignment: set them as raw elements
    ds.add(DataElement(0x0008002A, "DT", "2024"))  # X/Z/D, type 3 in CT: removed
    ds.add(DataElement(0x00080020, "DA", "2024", validation_mode=pydicom.config.IGNORE))
    ds.SeriesDate = ["20240101", "20240102"]
    deidentify_dataset(ds, DeidentificationState(), DeidentifyOptions(shift_days=10))
    assert "AcquisitionDateTime" not in ds
    assert _is_empty(ds["StudyDate"])
    assert list(ds.SeriesDate) == ["20240111", "20240112"]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]
    assert not any("10" in m for m in ds.DeidentificationMethod)  # the offset is not recorded


@pytest.mark.parametrize("days", [0, True, 1.5, 40000, "3"])
def test_bad_shift_is_rejected(days):
    with pytest.raises(ConfigError, match="shift_days"):
        DeidentifyOptions(shift_days=days)


# ---------------------------------------------------------------------------- options


def test_private_tags_removed_unless_kept(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    n_private = sum(1 for e in ds if e.tag.is_private)
    assert n_private > 0
    kept, _ = deidentified_copy(ds, DeidentificationState(), DeidentifyOptions(keep_private=True))
    removed, report = deidentified_copy(ds, DeidentificationState())
    assert sum(1 for e in kept if e.tag.is_private) == n_private
    assert not any(e.tag.is_private for e in removed.iterall())
    assert report.private_removed == n_private


def test_private_tags_removed_inside_sequences(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    item = Dataset()
    item.add_new(0x00091010, "LO", "private creator")
    item.add_new(0x00091001, "LO", f"{MARK} private")
    item.Manufacturer = "kept"
    ds.ContributingEquipmentSequence = Sequence([item])
    deidentify_dataset(ds, DeidentificationState())
    cleaned = ds.ContributingEquipmentSequence[0]
    assert not any(e.tag.is_private for e in cleaned) and cleaned.Manufacturer == "kept"


def test_overlays_removed_unless_kept(dicom_file):
    ds = pydicom.dcmread(dicom_file("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    overlay = [e.tag for e in ds if e.tag.group & 0xFF00 == 0x6000]
    assert (0x6000, 0x3000) in overlay
    ds.add_new(0x60004000, "LT", f"{MARK} overlay comment")
    ds.add_new(0x50000022, "LO", f"{MARK} curve description")
    ds.add_new(0x50003000, "OW", b"\x01\x00\x02\x00")
    kept, _ = deidentified_copy(ds, DeidentificationState(), DeidentifyOptions(keep_overlays=True))
    removed, report = deidentified_copy(ds, DeidentificationState())
    assert not any(e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in removed)
    assert report.repeating_groups_removed == len(overlay) + 3
    assert kept[0x60003000].value == ds[0x60003000].value
    assert 0x50003000 in kept
    assert 0x60004000 not in kept and 0x50000022 not in kept  # free text goes anyway


def test_copy_leaves_the_input_alone(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    original = copy.deepcopy(ds)
    clone, _ = deidentified_copy(ds, DeidentificationState())
    assert ds == original and ds.PatientName == original.PatientName
    assert _is_empty(clone["PatientName"]) and clone.SOPInstanceUID != ds.SOPInstanceUID


def test_previous_deidentification_is_kept_and_extended(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    deidentify_dataset(ds, DeidentificationState())
    deidentify_dataset(ds, DeidentificationState(), DeidentifyOptions(shift_days=2))
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


def test_code_sequences_with_dummy_action_get_a_dummy_code(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    code = Dataset()
    code.CodeValue = f"{MARK}1"
    code.CodingSchemeDesignator = "99LOCAL"
    code.CodeMeaning = f"{MARK} Dr Who"
    person = Dataset()
    person.PersonIdentificationCodeSequence = Sequence([code])
    person.PersonName = f"{MARK}^Operator"
    ds.OperatorIdentificationSequence = Sequence([person])  # X/D, type 3 in CT: removed
    ds.VerifyingObserverSequence = Sequence([copy.deepcopy(person)])  # D: items cleaned
    deidentify_dataset(ds, DeidentificationState())
    assert "OperatorIdentificationSequence" not in ds
    item = ds.VerifyingObserverSequence[0]
    dummy = item.PersonIdentificationCodeSequence
    assert len(dummy) == 1 and dummy[0].CodingSchemeDesignator == "99MEDSR"
    assert item.PersonName == "ANONYMIZED"


# ---------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("name", "burned", "warns"),
    [
        ("US1_UNCR.dcm", None, True),
        ("US1_UNCR.dcm", "NO", False),
        ("CT_small.dcm", None, False),
        ("CT_small.dcm", "YES", True),
    ],
)
def test_burned_in_annotation_warnings(dicom_file, caplog, name, burned, warns):
    ds = pydicom.dcmread(dicom_file(name))
    ds.PatientName = f"{MARK}^Burned"
    if burned is not None:
        ds.BurnedInAnnotation = burned
    with caplog.at_level("DEBUG"):
        report = deidentify_dataset(ds, DeidentificationState(), label="sub/x.dcm")
    assert bool(report.warnings) == warns
    assert all(w.startswith("sub/x.dcm: ") for w in report.warnings)
    assert MARK not in caplog.text and MARK not in " ".join(report.warnings)
    if warns:
        assert "sub/x.dcm" in caplog.text


# ---------------------------------------------------------------------------- files


def test_non_dicom_and_broken_files(dicom_file, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not dicom at all")
    with pytest.raises(UnsupportedFormatError, match=r"^notes\.txt: "):
        deidentify_file(text, tmp_path / "o1.dcm", DeidentificationState())
    broken = tmp_path / "broken.dcm"
    data = dicom_file("CT_small.dcm").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(ReadError, match=r"^broken\.dcm: "):
        deidentify_file(broken, tmp_path / "o2.dcm", DeidentificationState())
    assert not (tmp_path / "o1.dcm").exists() and not (tmp_path / "o2.dcm").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_file_without_preamble_is_accepted(dicom_file, tmp_path):
    out = tmp_path / "o.dcm"
    deidentify_file(dicom_file("rtstruct.dcm"), out, DeidentificationState())
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_tree_refuses_output_inside_input(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError):
        deidentify_tree(tmp_path / "in", tmp_path / "in" / "out", DeidentificationState())
    with pytest.raises(ConfigError):
        deidentify_tree(tmp_path / "in", tmp_path / "in", DeidentificationState())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        deidentify_tree(tmp_path / "in", tmp_path / "file", DeidentificationState())


def test_rows_with_values_in_real_files_change(real_path):
    """Every identifying attribute actually present in the real file is handled."""
    ds = read_dicom(real_path, label=real_path.name)
    present = [r for r in _injectable_rows() if r.tag in ds and not _is_empty(ds[r.tag])]
    assert present  # each real file has some
    before = copy.deepcopy(ds)
    deidentify_dataset(ds, DeidentificationState())
    for row in present:
        if row.tag in ds and ds[row.tag].VR != "SQ" and not _is_empty(ds[row.tag]):
            assert ds[row.tag].value != before[row.tag].value, row.keyword
