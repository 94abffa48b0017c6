from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medsr.cli import main
from medsr.io import read

FAST = ["--steps", "3", "--threads", "1"]


@pytest.fixture
def thick_nifti(tmp_path):
    """A 24 x 20 x 6 NIfTI volume (x, y, z) with 1 x 1 x 4 mm voxels, int16."""
    rng = np.random.default_rng(0)
    data = (rng.random((24, 20, 6)) * 1000).astype(np.int16)
    affine = np.diag([-1.0, 1.0, 4.0, 1.0])
    affine[:3, 3] = (30.0, -20.0, 5.0)
    path = tmp_path / "in" / "thick.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_self_supervised_writes_a_nifti_with_the_new_slice_spacing(thick_nifti, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "upscale",
            str(thick_nifti),
            "-o",
            str(out),
            "--self-supervised",
            "--axis",
            "through-plane",
            "--target-spacing",
            "2",
            "--slice-thickness",
            "3",
            *FAST,
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "6x20x24 -> 12x20x24" in stdout and "thickness 3 mm, gap 1 mm" in stdout
    img = nib.load(out / "thick.nii.gz")
    assert img.shape == (24, 20, 12)
    assert np.asarray(img.header.get_zooms()) == pytest.approx((1.0, 1.0, 2.0))
    # edges aligned: the first slice centre moves by (2 - 4) / 2 mm along z
    np.testing.assert_allclose(img.affine[:3, 3], (30.0, -20.0, 4.0), atol=1e-4)
    assert img.get_data_dtype() == np.int16  # the source's bit depth, rounded and clipped
    source = read(thick_nifti)
    assert abs(float(read(out / "thick.nii.gz").array.mean()) - float(source.array.mean())) < 40


def test_self_supervised_refuses_in_plane_and_isotropic_inputs(thick_nifti, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["upscale", str(thick_nifti), "-o", str(out), "--self-supervised", *FAST]) == 2
    assert "pass --axis through-plane" in capsys.readouterr().err
    iso = tmp_path / "in" / "iso.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), iso)
    code = main(
        ["upscale", str(iso), "-o", str(out), "--self-supervised", "--axis", "through-plane", *FAST]
    )
    assert code == 1
    assert "no through-plane axis" in capsys.readouterr().err
    code = main(
        [
            "upscale",
            str(thick_nifti),
            "-o",
            str(out),
            "--self-supervised",
            "--axis",
            "through-plane",
            "--target-spacing",
            "5",
            *FAST,
        ]
    )
    assert code == 1
    assert "target spacing 5.0 mm" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_self_supervised_refuses_a_2d_image(tmp_path, capsys):
    path = tmp_path / "slice.npy"
    np.save(path, np.ones((32, 32), np.float32))
    code = main(
        [
            "upscale",
            str(path),
            "-o",
            str(tmp_path / "o"),
            "--self-supervised",
            "--axis",
            "through-plane",
            *FAST,
        ]
    )
    assert code == 1
    assert "needs a volume" in capsys.readouterr().err


def test_self_supervised_dicom_series_becomes_a_derived_series(tmp_path, capsys):
    from medsr import samples
    from medsr.io import write

    ct = read(samples.path("chest-ct"))  # 3 axial slices, 5 mm, 0.84 mm pixels
    series = tmp_path / "ct"
    write(ct.replace(array=ct.array[:, 200:264, 180:244].copy()), series)
    source = read(series)
    code = main(
        [
            "upscale",
            str(series),
            "-o",
            str(tmp_path / "out"),
            "--self-supervised",
            "--axis",
            "through-plane",
            "--target-spacing",
            "2.5",
            *FAST,
        ]
    )
    assert code == 0, capsys.readouterr()
    sr = read(tmp_path / "out" / "ct")
    assert sr.array.shape == (6, 64, 64)
    assert sr.spacing == pytest.approx((2.5, *source.spacing[1:]))
    shift = np.asarray(sr.origin) - np.asarray(source.origin)
    np.testing.assert_allclose(shift, source.direction[:, 0] * (2.5 - 5.0) / 2, atol=1e-3)
    import pydicom

    first = pydicom.dcmread(sorted((tmp_path / "out" / "ct").iterdir())[0])
    first_in = pydicom.dcmread(sorted(series.iterdir())[0])
    assert float(first.SliceThickness) == pytest.approx(2.5)
    assert first.StudyInstanceUID == first_in.StudyInstanceUID
    assert first.SeriesInstanceUID != first_in.SeriesInstanceUID
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]


def test_self_supervised_over_a_folder_tree_and_refused_in_batch_only_modes(
    thick_nifti, tmp_path, capsys, monkeypatch
):
    # a folder of volumes is a folder tree (batch mode without --self-supervised): here each
    # volume gets its own model, and nothing is silently upscaled without self-supervision
    out = tmp_path / "out"
    args = ["upscale", str(thick_nifti.parent), "-o", str(out), "--self-supervised"]
    code = main([*args, "--axis", "through-plane", "--target-spacing", "2", *FAST])
    assert code == 0
    (written,) = [p for p in out.rglob("*.nii.gz")]
    assert read(written).spacing[0] == pytest.approx(2.0)
    assert not (out / "manifest.csv").exists()

    listing = tmp_path / "list.txt"
    listing.write_text(f"{thick_nifti}\n")
    code = main([*args, "--overwrite", "--list", str(listing), *FAST])
    assert code == 2
    assert "--list, --manifest and torchrun are not supported" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*args, "--overwrite", *FAST]) == 2


def test_budget_and_patience_options_and_plain_progress_lines(tmp_path, capsys):
    # 10 slices of 4 mm: slice 4 is held out, so there is a held-out PSNR to show
    rng = np.random.default_rng(1)
    data = (rng.random((24, 24, 10)) * 1000).astype(np.int16)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), path)
    args = ["upscale", str(path), "-o", str(tmp_path / "out"), "--self-supervised"]
    args += ["--axis", "through-plane", "--threads", "1"]
    code = main([*args, "--budget", "0.02", "--patience", "0"])  # 1.2 s of training
    captured = capsys.readouterr()
    assert code == 0, captured
    # not a terminal: plain lines for logs, the first step's and the first plane's at least
    lines = captured.err.splitlines()
    assert any(line.startswith("vol.nii.gz: training step 1, held-out PSNR") for line in lines)
    assert any(line.startswith("vol.nii.gz: applying, plane 1/48") for line in lines)
    assert "(time budget 1 s)" in captured.out and "held-out PSNR" in captured.out
    code = main([*args, "--overwrite", "--steps", "3"])
    captured = capsys.readouterr()
    assert code == 0 and " 3 steps on cpu (3 steps)" in captured.out
    for bad in ("0", "-1", "nan"):
        assert main([*args, "--overwrite", "--budget", bad]) == 2
        assert f"--budget must be a positive number of minutes, got {bad}" in (
            capsys.readouterr().err
        )


def test_reporter_throttles_plain_lines_and_updates_a_terminal_bar():
    import io

    from medsr.cli.selfsup import _Reporter
    from medsr.infer.selfsup import SelfSupProgress

    now = [0.0]
    stream = io.StringIO()
    plain = _Reporter("v.nii", print, plain=True, stream=stream, interval=30, clock=lambda: now[0])

    def train(done: int, ending: str | None = None) -> SelfSupProgress:
        return SelfSupProgress(
            stage="train",
            done=done,
            total=None,
            fraction=done / 1000,
            elapsed=done / 10,
            seconds_left=125.0,
            heldout_psnr=36.123,
            best_psnr=36.2,
            ending=ending,
        )

    plain(train(1))
    now[0] = 10.0
    plain(train(100))  # within 30 s of the last line: not shown
    now[0] = 31.0
    plain(train(300))
    now[0] = 32.0
    plain(train(310, ending="time budget 240 s"))  # the end begins: shown at once
    assert stream.getvalue().splitlines() == [
        "v.nii: training step 1, held-out PSNR 36.12 dB (best 36.20), 2:05 left",
        "v.nii: training step 300, held-out PSNR 36.12 dB (best 36.20), 2:05 left",
        "v.nii: training step 310, held-out PSNR 36.12 dB (best 36.20), 2:05 left, "
        "ending: time budget 240 s",
    ]
    updates: list[dict] = []
    bar = _Reporter("v.nii", lambda **kw: updates.append(kw), plain=False, stream=stream)
    bar(
        SelfSupProgress(
            stage="apply", done=3, total=40, fraction=0.075, elapsed=1.0, seconds_left=12.4
        )
    )
    assert updates == [
        {"description": "v.nii: applying, plane 3/40, 0:12 left", "completed": 3, "total": 40}
    ]
