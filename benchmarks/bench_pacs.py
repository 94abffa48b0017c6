"""PACS node benchmark (issue 19): series per minute through ``medsr listen`` against
``medsr upscale`` on the same files.

    python benchmarks/bench_pacs.py                       # 8 series of 8 CT slices, lanczos x2
    python benchmarks/bench_pacs.py --series 4 --append benchmarks/RESULTS.md

The series: the 64-slice chest CT ``../shared/data/chest-ct/A0001`` cut into series of
``--slices`` slices (each part given its own SeriesInstanceUID), else copies of the bundled
3-slice chest CT sample. Both paths use the same model and options, one CPU thread each:

* ``medsr upscale``: the real command in a subprocess on a folder of series folders (batch
  mode); its wall time (with start-up: importing PyTorch, loading the model) and the sum of
  the per-input times it reports (the processing alone).
* ``medsr listen``: the real command in a subprocess, started before the clock; the benchmark
  C-STOREs every series back to back over one association (pynetdicom) and a pynetdicom
  Storage SCP in this process receives the derived series. Time: first C-STORE sent to last
  derived instance received; it includes one quiet period (``--quiet``) for the last series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEADING = "## PACS node (issue 19)"
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_series(root: Path, count: int, slices: int) -> tuple[list[list[Path]], str]:
    """``count`` series folders under ``root``; returns their files and a description."""
    import pydicom
    from pydicom.uid import generate_uid

    from medsr import samples

    ct = SHARED / "chest-ct" / "A0001"
    if ct.is_dir() and len(list(ct.iterdir())) >= count * slices:
        files = sorted(ct.iterdir())
        note = f"shared chest-ct/A0001 cut into {count} series of {slices} slices"
        parts = [files[k * slices : (k + 1) * slices] for k in range(count)]
    else:
        sample = sorted(p for p in Path(samples.path("chest-ct")).iterdir() if p.is_file())
        note = f"{count} copies of the bundled {len(sample)}-slice chest CT sample"
        parts = [sample for _ in range(count)]
    series = []
    for k, part in enumerate(parts):
        folder = root / f"series{k + 1:02d}"
        folder.mkdir(parents=True)
        uid = generate_uid()
        paths = []
        for path in part:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            out = folder / path.name
            ds.save_as(out)
            paths.append(out)
        series.append(paths)
    shape = pydicom.dcmread(series[0][0], stop_before_pixels=True)
    return series, f"{note} ({shape.Rows}x{shape.Columns})"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), e.get("PYTHONPATH", "")])
    return e


def run_upscale(tree: Path, out: Path, options: list[str]) -> tuple[float, float]:
    """Wall seconds of ``medsr upscale`` and the sum of its per-input seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "medsr", "upscale", str(tree), "-o", str(out), *options],
        capture_output=True,
        text=True,
        env=env(),
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"medsr upscale failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    # batch mode prints "ok IN -> OUT: shape -> shape, 1.23 s, fidelity ..."
    loop = sum(float(s) for s in re.findall(r", ([0-9.]+) s, fidelity", done.stdout))
    return wall, loop


def run_node(
    series: list[list[Path]], spool: Path, options: list[str], quiet: float
) -> tuple[float, float]:
    """Seconds from the first C-STORE to the last derived instance received, and the sum of
    the per-series super-resolution times the node logged."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    expected = sum(len(s) for s in series)
    received: list[float] = []
    all_in = threading.Event()

    def on_store(event) -> int:
        received.append(time.perf_counter())
        if len(received) >= expected:
            all_in.set()
        return 0x0000

    sink = AE(ae_title="SINK")
    sink.supported_contexts = AllStoragePresentationContexts
    sink_port, node_port = free_port(), free_port()
    server = sink.start_server(
        ("127.0.0.1", sink_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    log = spool.parent / "listen.log"
    args = [sys.executable, "-m", "medsr", "listen", "--spool", str(spool), "--port"]
    args += [str(node_port), "--send-to", f"SINK@127.0.0.1:{sink_port}", "--quiet", str(quiet)]
    with log.open("wb") as f:
        node = subprocess.Popen([*args, *options], stdout=f, stderr=subprocess.STDOUT, env=env())
    try:
        while "medsr listen: AE" not in log.read_text(errors="replace"):
            if node.poll() is not None:
                raise SystemExit(f"medsr listen exited:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        scu = AE(ae_title="BENCH")
        scu.add_requested_context(CTImageStorage)
        start = time.perf_counter()
        assoc = scu.associate("127.0.0.1", node_port, ae_title="MEDSR")
        if not assoc.is_established:
            raise SystemExit("medsr listen refused the association")
        for paths in series:
            for path in paths:
                status = assoc.send_c_store(path)
                if int(status.Status) != 0:
                    raise SystemExit(f"C-STORE refused: 0x{int(status.Status):04X}")
        assoc.release()
        if not all_in.wait(3600):
            raise SystemExit(f"derived series incomplete:\n{log.read_text()[-2000:]}")
        elapsed = received[-1] - start
        time.sleep(1.0)  # the node logs "sent" after the last instance is acknowledged
        text = log.read_text(errors="replace")
        loop = sum(float(v) for v in re.findall(r"super-resolved \(.*?\) in ([0-9.]+) s", text))
        return elapsed, loop
    finally:
        node.terminate()
        node.wait(60)
        server.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", type=int, default=8)
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--model", default="lanczos")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--quiet", type=float, default=1.0, help="the node's quiet period (s)")
    p.add_argument("--append", type=Path, help="append the results section to this file")
    args = p.parse_args(argv)
    options = ["--model", args.model, "--scale", str(args.scale), "--device", "cpu"]
    options += ["--threads", "1"]
    before = load()
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        root = Path(tmp)
        series, note = build_series(root / "tree", args.series, args.slices)
        print(f"series: {note}")
        wall, loop = run_upscale(root / "tree", root / "out", options)
        print(f"medsr upscale: {wall:.1f} s wall, {loop:.1f} s processing")
        node, node_loop = run_node(series, root / "spool", options, args.quiet)
        print(f"medsr listen: {node:.1f} s from the first C-STORE to the last derived instance")
        shutil.rmtree(root / "out", ignore_errors=True)
    after = load()
    n = args.series

    def per_minute(seconds: float) -> str:
        return f"{n / seconds * 60:.1f}"

    overhead = node - node_loop - args.quiet
    lines = [
        "",
        HEADING,
        "",
        f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU used; "
        f"{dt.date.today().isoformat()}.",
        f"Command: `python benchmarks/bench_pacs.py --series {n} --slices {args.slices} "
        f"--append benchmarks/RESULTS.md`",
        f"Load average (1/5/15 min) before: {before}; after: {after} (other jobs share the cores).",
        f"Series: {note}. Model {args.model} x{args.scale}, in-plane, CPU, 1 thread.",
        "",
        "| path | seconds | series/minute |",
        "|---|---|---|",
        f"| `medsr upscale` (subprocess, wall, with start-up) | {wall:.1f} | {per_minute(wall)} |",
        f"| `medsr upscale` (its per-series processing only) | {loop:.1f} | {per_minute(loop)} |",
        f"| `medsr listen` (first C-STORE in to last derived instance out, "
        f"incl. one {args.quiet:g} s quiet period) | {node:.1f} | {per_minute(node)} |",
        f"| `medsr listen` (its per-series processing only) | {node_loop:.1f} | "
        f"{per_minute(node_loop)} |",
        "",
        f"Networking, spool and sending overhead of the node: {overhead:.1f} s "
        f"for {n} series ({overhead / n:.2f} s a series; the node's time "
        "less its processing and one quiet period); start-up of `medsr upscale`: "
        f"{wall - loop:.1f} s a run.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with args.append.open("a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
