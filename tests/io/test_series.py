from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from medsr.errors import MixedSeriesError, ReadError
from medsr.io import read
from medsr.io.series import list_folder, summarise


def header(number, modality="MR", rows=64, frames=None):
    ds = pydicom.Dataset()
    if number is not None:
        ds.SeriesNumber = number
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, rows
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def test_summaries_are_ordered_by_number_and_hide_the_uid():
    groups = {
        "1.2.9": [(Path("a"), header(None))],
        "1.2.8": [(Path("b"), header(12, "CT", 512)), (Path("c"), header(12, "CT", 512))],
        "1.2.7": [(Path("d"), header(3, "MR", 256, frames=20))],
    }
    infos = summarise(groups)
    assert [(i.index, i.number, i.modality, i.files) for i in infos] == [
        (1, 3, "MR", 1),
        (2, 12, "CT", 2),
        (3, None, "MR", 1),
    ]
    assert infos[0].describe() == "#1: number 3, MR, 256 x 256, 1 file, 20 frames"
    assert infos[2].describe() == "#3: no number, MR, 64 x 64, 1 file"
    assert "1.2.7" not in repr(infos[0]) and "1.2.7" not in str(infos[0].as_dict())


def test_read_picks_a_series_by_index(dicom_file, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), folder / "b.dcm")
    assert [i.modality for i in list_folder(folder)] == ["CT", "MR"]
    assert read(folder, series=1).modality == "CT"
    assert read(folder, series=2).modality == "MR"
    with pytest.raises(MixedSeriesError, match=r"no series #3.*#2: number 1, MR"):
        read(folder, series=3)
    with pytest.raises(ReadError, match="not both"):
        read(folder, series=1, series_uid="1.2")
    with pytest.raises(ReadError, match="a file holds one series"):
        read(folder / "a.dcm", series=2)
    assert read(folder / "a.dcm", series=1).modality == "CT"
