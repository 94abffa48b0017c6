"""Wall time of ``medsr --help``, ``--version`` and ``medsr COMMAND --help`` (fresh processes).

    python benchmarks/bench_cli_startup.py [--runs 15] [--src SRC_FOLDER]

``--src`` puts another source tree first on ``PYTHONPATH`` (e.g. an older checkout, to compare).
Prints the median, min and max wall time of ``--runs`` runs of each command, after one warm-up
run, and the median CPU time (user + system) of the child: on a loaded machine the wall time
includes waiting for a core, the CPU time is close to what an idle machine takes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--help"],
    ["--version"],
    ["upscale", "--help"],
    ["info", "--help"],
    ["prepare", "--help"],
    ["serve", "--help"],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", default=None, help="source folder put first on PYTHONPATH")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src, env.get("PYTHONPATH")]))
    print(f"| command ({args.runs} runs) | wall median (s) | min | max | CPU median (s) |")
    print("|---|---:|---:|---:|---:|")
    for argv in COMMANDS:
        command = [sys.executable, "-m", "medsr", *argv]
        subprocess.run(command, env=env, capture_output=True, check=True)  # warm-up
        times, cpu = [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        print(
            f"| `medsr {' '.join(argv)}` | {statistics.median(times):.2f} | {min(times):.2f} "
            f"| {max(times):.2f} | {statistics.median(cpu):.2f} |"
        )


if __name__ == "__main__":
    main()
