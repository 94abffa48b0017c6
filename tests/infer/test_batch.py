"""Batch inference (medsr.infer.batch): sharding, manifest, resume after a kill, retries, and
two gloo processes under torchrun giving the outputs of one process, on real files."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsr import samples
from medsr.cli import main
from medsr.errors import ConfigError
from medsr.infer.batch import (
    MANIFEST_COLUMNS,
    WORK_DIR,
    BatchItem,
    ItemResult,
    common_root,
    read_list_file,
    read_manifest,
    run_batch,
    shard,
)
from medsr.infer.defaults import default_model
from medsr.io import read, write

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path, dicom_file) -> Path:
    """Six small real inputs: a CT series, an MR NIfTI, two X-ray crops, two DICOM files."""
    root = tmp_path / "archive"
    shutil.copytree(samples.path("chest-ct"), root / "patient1" / "ct")
    (root / "patient2").mkdir(parents=True)
    shutil.copy(samples.path("brain-mri"), root / "patient2" / "flair.nii.gz")
    (root / "xray").mkdir()
    with PILImage.open(samples.path("chest-xray")) as im:
        im.crop((400, 300, 464, 364)).save(root / "xray" / "a.png")
        im.crop((100, 500, 148, 560)).save(root / "xray" / "b.png")
    for name, folder in (("CT_small.dcm", "ct_small"), ("MR_small.dcm", "mr_small")):
        (root / folder).mkdir()
        shutil.copy(dicom_file(name), root / folder / name)
    return root


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def outputs_of(out: Path) -> dict[str, np.ndarray]:
    """Every output (a DICOM series folder counts once) read back, by relative path."""
    found = {}
    for row in rows_of(out / "manifest.csv"):
        if row["status"] == "ok":
            found[row["output"]] = read(out / row["output"]).array
    return found


def _env() -> dict[str, str]:
    # this checkout's medsr (src/) first: the venv's editable install may point at another one
    path = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


# -- pieces --------------------------------------------------------------------------------------
def test_shard_is_a_deterministic_partition_of_the_sorted_inputs():
    items = [BatchItem(Path(f"/x/{name}.png"), Path(name)) for name in "dbeac"]
    shards = [shard(items, rank, 2) for rank in range(2)]
    assert [i.stem.name for i in shards[0]] == ["a", "c", "e"]
    assert [i.stem.name for i in shards[1]] == ["b", "d"]
    assert shard(list(reversed(items)), 1, 2) == shards[1]
    with pytest.raises(ConfigError, match="rank 2"):
        shard(items, 2, 2)


def test_list_file_and_common_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.png").touch()
    listing = tmp_path / "a" / "inputs.txt"
    listing.write_text(f"# studies\nx.png\n\n{tmp_path / 'a' / 'b'}\n")
    entries = read_list_file(listing)
    assert entries == [tmp_path / "a" / "x.png", tmp_path / "a" / "b"]
    assert common_root(entries) == tmp_path / "a"
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="names no inputs"):
        read_list_file(tmp_path / "empty.txt")


def test_a_row_cut_short_by_a_kill_is_not_read(tmp_path):
    path = tmp_path / "part.csv"
    full = {name: "" for name in MANIFEST_COLUMNS}
    full.update(input="/a.png", output="a.png", status="ok", finished="2026-11-21T10:00:00+00:00")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(full)
    line = ",".join(full[name] for name in MANIFEST_COLUMNS)
    with path.open("a") as f:
        f.write(line.replace("/a.png", "/b.png")[:-12])  # killed in the middle of the row
    assert [row["input"] for row in read_manifest(path)] == ["/a.png"]


# -- the CLI on a tree of real files -------------------------------------------------------------
def test_a_tree_gives_a_mirrored_tree_and_a_manifest_and_resumes(tree, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["upscale", str(tree), "-o", str(out), "--model", "bilinear"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "6 of 6 inputs upscaled" in stdout and "inputs/s" in stdout and "slices/s" in stdout
    rows = rows_of(out / "manifest.csv")
    assert sorted(r["output"] for r in rows) == [
        "ct_small.dcm",
        "mr_small.dcm",
        "patient1/ct",
        "patient2/flair.nii.gz",
        "xray/a.png",
        "xray/b.png",
    ]
    assert [r["input"] for r in rows] == sorted(r["input"] for r in rows)
    ct = next(r for r in rows if r["output"] == "patient1/ct")
    assert ct["input_shape"] == "3x512x512" and ct["output_shape"] == "3x1024x1024"
    assert ct["slices"] == "3" and ct["model"] == "bilinear x2" and ct["status"] == "ok"
    assert float(ct["fidelity_psnr"]) > 30 and float(ct["seconds"]) > 0
    spacing = [float(v) for v in ct["output_spacing"].split("x")]
    source = read(tree / "patient1" / "ct")
    assert spacing == pytest.approx([5.0, source.spacing[1] / 2, source.spacing[2] / 2], rel=1e-5)
    assert read(out / "xray" / "a.png").array.shape == (128, 128)
    assert not (out / WORK_DIR).exists()

    before = (out / "xray" / "a.png").stat().st_mtime_ns
    assert main(args) == 0  # nothing left to do
    stdout = capsys.readouterr().out
    assert "resuming: 6 input(s) already done, 0 to do" in stdout
    assert (out / "xray" / "a.png").stat().st_mtime_ns == before
    assert len(rows_of(out / "manifest.csv")) == 6

    (out / "xray" / "b.png").unlink()  # a lost output is made again
    assert main(args) == 0
    assert "1 of 1 inputs upscaled; 5 already done" in capsys.readouterr().out
    assert read(out / "xray" / "b.png").array.shape == (120, 96)
    assert len(rows_of(out / "manifest.csv")) == 6

    assert main([*args[:-1], "nearest"]) != 0  # other settings: refused, not mixed
    assert "other settings" in capsys.readouterr().err


def test_a_fresh_run_does_not_replace_files_it_did_not_make(tree, tmp_path, capsys):
    out = tmp_path / "out"
    write(read(tree / "xray" / "a.png"), out / "a.png")
    args = ["upscale", str(tree / "xray"), "-o", str(out), "--model", "nearest"]
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert read(out / "a.png").array.shape == (64, 64)
    assert read(out / "b.png").array.shape == (120, 96)  # the others go on
    # --overwrite replaces only medsr's own outputs: this a.png is not one of them
    assert main([*args, "--overwrite"]) == 1
    assert "not an earlier medsr output" in capsys.readouterr().err
    assert read(out / "a.png").array.shape == (64, 64)
    (out / "a.png").unlink()
    assert main([*args, "--overwrite"]) == 0
    assert main([*args, "--overwrite"]) == 0  # now it is medsr's: replaced
    assert read(out / "a.png").array.shape == (128, 128)


def test_without_a_model_a_tree_uses_the_shipped_model_for_the_scale(tree, tmp_path):
    out = tmp_path / "out"
    assert main(["upscale", str(tree / "xray"), "-o", str(out), "--scale", "4"]) == 0
    rows = rows_of(out / "manifest.csv")
    assert {row["model"] for row in rows} == {f"{default_model(4)} x4"}
    assert read(out / "b.png").array.shape == (240, 192)


def test_a_list_file_mirrors_below_the_common_folder(tree, tmp_path, capsys):
    listing = tmp_path / "inputs.txt"
    listing.write_text(
        "archive/xray/b.png\narchive/patient1/ct\n# a comment\narchive/patient2/flair.nii.gz\n"
    )
    out = tmp_path / "out"
    assert main(["upscale", "--list", str(listing), "-o", str(out), "--model", "nearest"]) == 0
    assert read(out / "xray" / "b.png").array.shape == (120, 96)
    assert read(out / "patient1" / "ct").array.shape == (3, 1024, 1024)
    assert (out / "patient2" / "flair.nii.gz").is_file()
    assert len(rows_of(out / "manifest.csv")) == 3


def test_deidentified_runs_resume_only_with_a_key(tree, tmp_path, capsys):
    out, manifest = tmp_path / "out", tmp_path / "results" / "run.csv"
    args = ["upscale", str(tree / "xray"), "-o", str(out), "--manifest", str(manifest)]
    assert main([*args, "--deidentify", "--model", "nearest"]) == 0
    assert len(rows_of(manifest)) == 2 and not (out / "manifest.csv").exists()
    assert main([*args, "--deidentify", "--model", "nearest"]) == 2
    assert "needs the same --deid-key" in capsys.readouterr().err
    assert main([*args, "--manifest", str(tmp_path / "run.parquet")]) == 2
    assert "give a .csv path" in capsys.readouterr().err


# -- failures and retries ------------------------------------------------------------------------
def test_a_failed_input_is_retried_once_then_listed_and_the_others_go_on(tree, tmp_path):
    items = [
        BatchItem(tree / "xray" / name, Path("xray") / Path(name).stem)
        for name in ("a.png", "b.png", "broken.png")
    ]
    (tree / "xray" / "broken.png").write_bytes((tree / "xray" / "a.png").read_bytes()[:100])
    calls: dict[str, int] = {}

    def process(item: BatchItem, staging: Path) -> ItemResult:
        calls[item.path.name] = calls.get(item.path.name, 0) + 1
        if item.path.name == "a.png" and calls["a.png"] == 1:
            raise OSError("the file server hiccuped")  # a transient failure
        image = read(item.path)
        target = staging / item.stem.with_suffix(".png")
        write(image, target)
        return ItemResult(
            output=target, input_shape=image.array.shape, output_shape=image.array.shape
        )

    report = run_batch([*items, items[1]], process, out=tmp_path / "out", settings="copy")
    assert calls == {"a.png": 2, "b.png": 1, "broken.png": 2}  # b.png given twice, done once
    assert report.ok == 2 and report.failed == 1 and report.total == 3
    assert [path for path, _ in report.failures] == [str(tree / "xray" / "broken.png")]
    rows = {Path(r["input"]).name: r for r in rows_of(tmp_path / "out" / "manifest.csv")}
    assert (rows["a.png"]["status"], rows["a.png"]["attempts"]) == ("ok", "2")
    assert (rows["b.png"]["status"], rows["b.png"]["attempts"]) == ("ok", "1")
    broken = rows["broken.png"]
    assert (broken["status"], broken["attempts"], broken["output"]) == ("failed", "2", "")
    assert "broken.png" in broken["error"] or broken["error"]
    assert (tmp_path / "out" / "xray" / "a.png").is_file()

    # a re-run tries the failed input again and keeps one row per input
    shutil.copy(tree / "xray" / "b.png", tree / "xray" / "broken.png")
    report = run_batch(items, process, out=tmp_path / "out", settings="copy")
    assert (report.skipped, report.ok, report.failed) == (2, 1, 0)
    rows = rows_of(tmp_path / "out" / "manifest.csv")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}


# -- killed runs ---------------------------------------------------------------------------------
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import medsr.cli.upscale as upscale
    import medsr.infer.batch as batch
    from medsr.cli import main

    where, n = sys.argv[1], int(sys.argv[2])
    count = [0]
    if where == "mid-input":
        original = upscale.run_job  # medsr.infer.pipeline.run

        def process(job, *rest, **options):
            count[0] += 1
            if count[0] == n:  # half-written output in the staging folder, then killed
                (job.out / "partial.bin").write_bytes(b"x" * 1000)
                os.kill(os.getpid(), signal.SIGKILL)
            return original(job, *rest, **options)

        upscale.run_job = process
    else:  # killed after the output was renamed into place, before its manifest row
        original = batch._PartWriter.write

        def write(self, row):
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            original(self, row)

        batch._PartWriter.write = write
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.mark.slow  # a killed subprocess, a resumed run and a reference run: about 10 s
@pytest.mark.parametrize("where", ["mid-input", "before-row"])
def test_a_killed_run_resumes_with_no_duplicate_or_missing_rows(tree, tmp_path, capsys, where):
    out, reference = tmp_path / "out", tmp_path / "reference"
    args = ["upscale", str(tree), "-o", str(out), "--model", "bilinear"]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, where, "3", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    assert not (out / "manifest.csv").exists()
    (part,) = (out / WORK_DIR).glob("part-*.csv")
    assert len(read_manifest(part)) == 2

    assert main(args) == 0
    assert "resuming: 2 input(s) already done, 4 to do" in capsys.readouterr().out
    rows = rows_of(out / "manifest.csv")
    assert len(rows) == 6 and len({r["input"] for r in rows}) == 6
    assert all(r["status"] == "ok" and r["attempts"] == "1" for r in rows)
    assert not (out / WORK_DIR).exists()
    assert not list(out.rglob("partial.bin"))

    assert main([*args[:3], str(reference), *args[4:]]) == 0
    got, expected = outputs_of(out), outputs_of(reference)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


# -- torchrun ------------------------------------------------------------------------------------
@pytest.mark.slow  # torchrun starts two fresh interpreters: about 12 s
def test_two_gloo_processes_under_torchrun_match_one_process(tree, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    common = [str(tree), "--model", "bilinear", "--device", "cpu"]
    assert main(["upscale", "-o", str(one), *common]) == 0
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "medsr",
            "upscale",
            "-o",
            str(two),
            *common,
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[rank 0] ok" in done.stdout and "[rank 1] ok" in done.stdout
    assert "rank 1: 3 inputs" in done.stdout and "6 of 6 inputs upscaled" in done.stdout
    rows1, rows2 = rows_of(one / "manifest.csv"), rows_of(two / "manifest.csv")
    assert {r["rank"] for r in rows2} == {"0", "1"}
    varying = {"seconds", "rank", "finished"}
    assert [{k: v for k, v in r.items() if k not in varying} for r in rows1] == [
        {k: v for k, v in r.items() if k not in varying} for r in rows2
    ]
    got, expected = outputs_of(two), outputs_of(one)
    assert sorted(got) == sorted(expected) and len(got) == 6
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_the_manifest_has_a_parquet_copy_when_pyarrow_is_installed(tree, tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out"
    assert main(["upscale", str(tree / "xray"), "-o", str(out), "--model", "nearest"]) == 0
    table = parquet.read_table(out / "manifest.parquet").to_pylist()
    rows = rows_of(out / "manifest.csv")
    assert len(table) == len(rows) == 2
    assert [r["input"] for r in table] == [r["input"] for r in rows]
    assert [r["status"] for r in table] == ["ok", "ok"]


# -- output names and ownership (issue 15) ---------------------------------------------------------
def test_two_series_with_one_number_get_their_own_stable_outputs(dicom_file, tmp_path, capsys):
    """CT_small and MR_small both have SeriesNumber 1: one folder, two series, two outputs
    named by number and a hash of the UID, the same in every run; a resume keeps both."""
    folder = tmp_path / "archive" / "two"
    folder.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(dicom_file(name), folder / name)
    runs = {}
    for run in ("out", "again"):
        out = tmp_path / run
        args = ["upscale", str(tmp_path / "archive"), "-o", str(out), "--model", "nearest"]
        assert main(args) == 0
        rows = rows_of(out / "manifest.csv")
        assert [r["status"] for r in rows] == ["ok", "ok"]
        runs[run] = {r["series_uid"]: r["output"] for r in rows}
    outputs = sorted(runs["out"].values())
    assert runs["out"] == runs["again"]  # stable
    assert len(set(outputs)) == 2 and all(o.startswith("two/series-1-") for o in outputs)
    out = tmp_path / "out"
    shapes = {uid: read(out / name).array.shape for uid, name in runs["out"].items()}
    assert sorted(shapes.values()) == [(128, 128), (256, 256)]
    capsys.readouterr()
    assert main(["upscale", str(tmp_path / "archive"), "-o", str(out), "--model", "nearest"]) == 0
    assert "2 input(s) already done, 0 to do" in capsys.readouterr().out
    assert {uid: read(out / name).array.shape for uid, name in runs["out"].items()} == shapes


def test_an_old_manifest_listing_one_output_for_two_inputs_is_redone(dicom_file, tmp_path, capsys):
    """medsr before issue 15 wrote both series to two/series-1.dcm and listed both as ok at
    that path: a resume must redo them (into their own names), not skip them."""
    folder = tmp_path / "archive" / "two"
    folder.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(dicom_file(name), folder / name)
    out = tmp_path / "out"
    args = ["upscale", str(tmp_path / "archive"), "-o", str(out), "--model", "nearest"]
    assert main(args) == 0
    rows = rows_of(out / "manifest.csv")
    shared = out / "two" / "series-1.dcm"
    shutil.copy(out / rows[1]["output"], shared)
    for row in rows:
        (out / row["output"]).unlink()
        row["output"] = "two/series-1.dcm"
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(args) == 0
    assert "2 of 2 inputs upscaled" in capsys.readouterr().out
    rows = rows_of(out / "manifest.csv")
    assert len({r["output"] for r in rows}) == 2 and "two/series-1.dcm" not in rows[0]["output"]


def test_a_resume_never_writes_over_another_inputs_output(tree, tmp_path):
    """An earlier manifest says x.png is a.png's output; b.png, whose output would be x.png
    too, fails instead of replacing it."""
    out = tmp_path / "out"

    def copy_to_x(item: BatchItem, staging: Path) -> ItemResult:
        image = read(item.path)
        target = staging / "x.png"
        write(image, target)
        return ItemResult(output=target, input_shape=image.array.shape)

    a, b = (BatchItem(tree / "xray" / n, Path("x")) for n in ("a.png", "b.png"))
    assert run_batch([a], copy_to_x, out=out, settings="copy").ok == 1
    before = (out / "x.png").read_bytes()
    report = run_batch([b], copy_to_x, out=out, settings="copy", retries=0)
    assert report.failed == 1 and "is the output of another input" in report.failures[0][1]
    assert (out / "x.png").read_bytes() == before
    rows = {Path(r["input"]).name: r for r in rows_of(out / "manifest.csv")}
    assert rows["a.png"]["status"] == "ok" and rows["b.png"]["status"] == "failed"


def test_batch_inputs_writing_one_output_are_refused_before_anything_is_written(
    tree, tmp_path, capsys
):
    with PILImage.open(tree / "xray" / "a.png") as im:
        im.save(tree / "xray" / "a.tif")
        im.convert("L").save(tree / "xray" / "a.jpg")  # a.png and a.jpg both give a.png
    out = tmp_path / "out"
    assert main(["upscale", str(tree), "-o", str(out), "--model", "nearest"]) == 2
    err = capsys.readouterr().err
    assert "would write the same output" in err and "a.jpg" in err and "a.tif" not in err
    assert not out.exists() or not any(out.rglob("*.*"))
