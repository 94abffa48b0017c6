"""Web app benchmark (issue 8): upload -> result latency through the HTTP API, and how long
the comparison view waits for a slice.

    python benchmarks/bench_web.py                      # prints a Markdown section
    python benchmarks/bench_web.py --append benchmarks/RESULTS.md

Inputs: the bundled samples (the 3-slice 512x512 CT series, zipped; the chest X-ray PNG; the
brain MR NIfTI volume) and pydicom's CT_small.dcm. Each is uploaded ``--repeats`` times
with the default model (Lanczos) at x2 through the real app (httpx test client, one worker);
the job's own ``seconds`` (read, upscale, bicubic baseline, write) is reported next to the
wall time from upload to ``done`` as the page polls it (every 50 ms here, 300 ms on the page).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path


def _inputs() -> dict[str, tuple[str, bytes]]:
    import pydicom

    from medsr import samples

    series = samples.path("chest-ct")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(series.iterdir()):
            archive.write(path, f"ct/{path.name}")
    ct_small = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    return {
        "CT_small.dcm (128x128 CT)": ("ct.dcm", ct_small.read_bytes()),
        "chest-ct zip (3x512x512 CT series)": ("ct.zip", buffer.getvalue()),
        "chest-xray.png (sample radiograph)": ("x.png", samples.path("chest-xray").read_bytes()),
        "brain-mri.nii.gz (240x240 MR slice)": (
            "mr.nii.gz",
            samples.path("brain-mri").read_bytes(),
        ),
    }


def run(repeats: int, only: list[str] | None = None) -> list[dict]:
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

    from medsr.web.app import ServeSettings, create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServeSettings(data_dir=Path(tmp)))
        with TestClient(app) as client:
            for label, (name, data) in _inputs().items():
                if only and not any(label.startswith(prefix) for prefix in only):
                    continue
                walls, jobs, slices = [], [], []
                for _ in range(repeats):
                    start = time.perf_counter()
                    r = client.post("/api/jobs", files={"file": (name, data)}, data={"scale": "2"})
                    r.raise_for_status()
                    job_id = r.json()["id"]
                    while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in (
                        "done",
                        "failed",
                    ):
                        time.sleep(0.05)
                    walls.append(time.perf_counter() - start)
                    assert job["status"] == "done", job["error"]
                    jobs.append(job["seconds"])
                    t = time.perf_counter()
                    for view in ("lr", "bicubic", "sr"):
                        client.get(f"/api/jobs/{job_id}/views/{view}/{job['slices'] // 2}")
                    slices.append(time.perf_counter() - t)
                rows.append(
                    {
                        "input": label,
                        "shape": "x".join(map(str, job["input_shape"])),
                        "output": "x".join(map(str, job["output_shape"])),
                        "wall": statistics.median(walls),
                        "job": statistics.median(jobs),
                        "views": statistics.median(slices),
                        "bytes": len(data),
                    }
                )
    return rows


def markdown(rows: list[dict], repeats: int, command: str) -> str:
    load = os.getloadavg()
    lines = [
        "## Web app (issue 8)",
        "",
        f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU (shared with other "
        f"helpers); {dt.date.today().isoformat()}; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at the end.",
        f"Command: `{command}` (median of {repeats}; Lanczos x2, one worker, httpx test client).",
        "",
        "| input | upload | shape -> output | upload to done (s) | job (s) | 3 view slices (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['bytes'] / 2**20:.2f} MiB | {r['shape']} -> {r['output']} | "
            f"{r['wall']:.2f} | {r['job']:.2f} | {r['views']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--inputs", nargs="+", default=None, help="only inputs whose label starts like these"
    )
    parser.add_argument("--append", type=Path, default=None, help="append to this Markdown file")
    args = parser.parse_args(argv)
    rows = run(args.repeats, args.inputs)
    command = "python benchmarks/bench_web.py" + " ".join([""] + (argv or sys.argv[1:]))
    text = markdown(rows, args.repeats, command.strip())
    print(text)
    if args.append is not None:
        with open(args.append, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
