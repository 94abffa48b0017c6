from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsr.data.scan import scan
from medsr.data.subjects import compile_subject_regex, hashed_id, subject_of
from medsr.errors import ConfigError
from medsr.io import read
from tests.data.conftest import blob_volume, make_npz_folder, write_dicom_series


def test_path_rules_first_subfolder_else_file_stem(brats_like: Path, tmp_path: Path) -> None:
    for entry in scan([brats_like]).volumes:
        subject = subject_of(entry, read(entry.path), salt="s")
        assert subject.id == entry.path.parent.name and subject.rule == "path"
    spine = make_npz_folder(tmp_path / "spine", ["VB1_02", "IVD_11"])
    ids = [subject_of(e, read(e.path), salt="s").id for e in scan([spine]).volumes]
    assert ids == ["IVD_11", "VB1_02"]


def test_regex_overrides_and_must_match(tmp_path: Path) -> None:
    spine = make_npz_folder(tmp_path / "spine", ["VB1_02", "VB1_03"])
    entries = scan([spine]).volumes
    image = read(entries[0].path)
    named = compile_subject_regex(r"(?P<subject>VB\d)_")
    assert subject_of(entries[0], image, salt="s", regex=named).id == "VB1"
    assert (
        subject_of(entries[0], image, salt="s", regex=compile_subject_regex(r"_(\d+)")).id == "02"
    )
    assert subject_of(entries[0], image, salt="s", regex=compile_subject_regex(r"VB\d")).id == "VB1"
    with pytest.raises(ConfigError, match="does not match"):
        subject_of(entries[0], image, salt="s", regex=compile_subject_regex("pat"))
    with pytest.raises(ConfigError, match="invalid --subject-regex"):
        compile_subject_regex("(")


def test_dicom_patient_id_is_stored_as_a_salted_hash(dicom_file, tmp_path: Path) -> None:
    write_dicom_series(
        dicom_file("MR_small.dcm"),
        tmp_path / "ct" / "S1",
        blob_volume((3, 64, 64)),
        patient_id="SECRET-4711",
    )
    entry = scan([tmp_path / "ct"]).volumes[0]
    image = read(entry.path)
    a = subject_of(entry, image, salt="one")
    assert a.id == hashed_id("SECRET-4711", "one") and "SECRET" not in a.id
    assert a.id.startswith("id-") and len(a.id) == 19 and a.rule == "dicom PatientID"
    assert subject_of(entry, image, salt="one").id == a.id
    b = subject_of(entry, image, salt="two")
    assert b.id != a.id and b.key == a.key  # the split key does not depend on the salt


def test_mat_pid_is_hashed_too(tmp_path: Path) -> None:
    import scipy.io

    folder = tmp_path / "figshare"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 4000, size=(16, 16)).astype(np.int16)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    cj = {"image": image, "tumorMask": mask, "label": 1.0, "PID": "100360"}
    scipy.io.savemat(folder / "1.mat", {"cjdata": cj})
    entry = scan([folder]).volumes[0]
    subject = subject_of(entry, read(entry.path), salt="x")
    assert subject.id == hashed_id("100360", "x") and subject.rule == "MAT PID"
