from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.data.pairing import pair_series, series_slices, write_pairs
from medsr.errors import GeometryError, MixedSeriesError
from medsr.io import Image, read, write
from medsr.transforms.degrade import thick_slices
from tests.data.conftest import blob_volume


def _thin_and_thick(volume: np.ndarray, tmp: Path, thickness: int, *, like_thin: bool = True):
    """Write ``volume`` (1 mm slices) as a DICOM series and its thick-slice version derived
    from the written series (same study and frame of reference)."""
    write(Image(array=volume, spacing=(1.0, 0.9, 0.9), origin=(-20.0, 5.0, 30.0)), tmp / "thin")
    thin = read(tmp / "thin")
    thick = thin.regrid(
        thick_slices(torch.from_numpy(thin.array), thickness=thickness, axis=0).numpy()
    )
    assert thick.spacing[0] == thickness
    write(thick if like_thin else thick.replace(source=None), tmp / "thick")
    return tmp / "thin", tmp / "thick"


def _check_exact(thin: Path, thick: Path, thickness: int) -> None:
    hr, lr = series_slices(thin), series_slices(thick)
    pairing = pair_series(lr, hr)
    assert pairing.tolerance == pytest.approx(0.5)
    assert len(pairing.pairs) == len(hr) // thickness and not pairing.unmatched
    for p in pairing.pairs:
        # thick slice j is centred at thin coordinate (j + 0.5) * thickness - 0.5; odd
        # thicknesses land on a thin slice, even ones halfway between two (lower one chosen)
        assert p.hr_index == p.lr_index * thickness + (thickness - 1) // 2
        assert p.distance == pytest.approx(0.0 if thickness % 2 else 0.5, abs=1e-4)
        assert p.in_plane_offset == pytest.approx(0.0, abs=1e-4)
        assert p.hr_name == f"IM{p.hr_index + 1:05d}.dcm"


@pytest.mark.parametrize("thickness", [4, 5])
def test_synthetic_thin_and_thick_series_pair_exactly(tmp_path: Path, thickness: int) -> None:
    volume = blob_volume((20, 16, 16), blank=0).astype(np.float32)
    _check_exact(*_thin_and_thick(volume, tmp_path, thickness), thickness)


def test_real_volume_thin_and_4mm_series(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "brain-mri-brats2013" / "pat0004" / "T1c_subtrMeanDivStd.nii.gz"
    if not path.is_file():
        pytest.skip("BraTS pat0004 missing")
    volume = read(path).array[60:100, 60:124, 60:124]  # 40 slices at 1 mm through the brain
    thin, thick = _thin_and_thick(volume, tmp_path, 4)
    _check_exact(thin, thick, 4)
    # and the thick series really is the average of its thin slices (values survive DICOM)
    lr, hr = read(thick).array, read(thin).array
    assert abs(float(lr[3].mean()) - float(hr[12:16].mean())) < 0.05 * float(np.abs(hr).mean())


def test_unmatched_lr_slices_are_listed(tmp_path: Path) -> None:
    volume = blob_volume((20, 16, 16), blank=0).astype(np.float32)
    thin, thick = _thin_and_thick(volume, tmp_path, 5)
    for name in ("IM00016.dcm", "IM00017.dcm", "IM00018.dcm", "IM00019.dcm", "IM00020.dcm"):
        (thin / name).unlink()  # the HR series now stops at 15 mm
    pairing = pair_series(series_slices(thick), series_slices(thin))
    assert [p.lr_index for p in pairing.unmatched] == [3]
    assert pairing.unmatched[0].distance == pytest.approx(3.0)
    wide = pair_series(series_slices(thick), series_slices(thin), tolerance=3.0)
    assert not wide.unmatched
    out = write_pairs(pairing, tmp_path / "pairs.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("lr_index,lr_file,lr_position_mm,hr_index")
    assert lines[-1].endswith("false") and len(lines) == 5


def test_different_frames_of_reference_are_refused(tmp_path: Path) -> None:
    volume = blob_volume((10, 16, 16), blank=0).astype(np.float32)
    thin, thick = _thin_and_thick(volume, tmp_path, 5, like_thin=False)  # a new Secondary Capture
    with pytest.raises(GeometryError, match="different FrameOfReferenceUIDs"):
        pair_series(series_slices(thick), series_slices(thin))


def test_different_orientations_are_refused(tmp_path: Path) -> None:
    volume = blob_volume((10, 16, 16), blank=0).astype(np.float32)
    write(Image(array=volume, spacing=(1.0, 1.0, 1.0)), tmp_path / "axial")
    axial = read(tmp_path / "axial")
    tilted = np.column_stack([axial.direction[:, 0], axial.direction[:, 2], axial.direction[:, 1]])
    write(axial.replace(direction=tilted), tmp_path / "swapped", like=axial)
    with pytest.raises(GeometryError, match="different orientations"):
        pair_series(series_slices(tmp_path / "swapped"), series_slices(tmp_path / "axial"))


def test_series_reading_errors(tmp_path: Path, dicom_file) -> None:
    import shutil

    from tests.data.conftest import write_dicom_series

    folder = tmp_path / "two"
    write_dicom_series(dicom_file("MR_small.dcm"), folder, blob_volume((2, 64, 64)), patient_id="a")
    other = write_dicom_series(
        dicom_file("MR_small.dcm"), tmp_path / "o", blob_volume((2, 64, 64)), patient_id="a"
    )
    for f in other.iterdir():
        shutil.copy(f, folder / f"b{f.name}")
    with pytest.raises(MixedSeriesError, match="2 series"):
        series_slices(folder)
    uid = str(read(other).source.datasets[0].SeriesInstanceUID)
    assert len(series_slices(folder, series_uid=uid)) == 2
    single = series_slices(dicom_file("MR_small.dcm"))
    assert len(single) == 1
