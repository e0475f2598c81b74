"""Wall time of ``nnboundary demo`` and of ``nnboundary reproduce --all --profile quick`` (issue 4 target: the
whole quick set under 15 minutes on 2 CPU cores; the demo under about a minute).

Each command runs as a subprocess, exactly as a user types it, into a temporary folder; the script prints the
times and writes them with the machine description to a JSON file. Not a test: nothing here gates CI.

Usage::

    python benchmarks/quick_suite.py                     # demo + the whole quick set
    python benchmarks/quick_suite.py --skip-all          # demo only
    python benchmarks/quick_suite.py --threads 1 --out bench_quick.json

The machine the numbers come from matters (a shared CPU stretches them): the JSON records the core count,
the load average before the run and the torch thread setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli() -> list[str]:
    return [sys.executable, "-c", "from nnboundary.cli import app; app()"]


def _run(args: list[str], cwd: Path) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([*_cli(), *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-all", action="store_true", help="Only time the demo.")
    parser.add_argument("--skip-demo", action="store_true", help="Only time the quick set.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads passed to the CLI (--threads).")
    parser.add_argument("--out", type=Path, default=Path("bench_quick_suite.json"), help="JSON output file.")
    args = parser.parse_args()
    threads = [] if args.threads is None else ["--threads", str(args.threads)]

    import torch

    import nnboundary

    record: dict = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg(), "torch": torch.__version__,
                    "torch_threads_default": torch.get_num_threads(), "threads_arg": args.threads},
        "nnboundary": nnboundary.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="nnb-bench-") as tmp:
        cwd = Path(tmp)
        if not args.skip_demo:
            seconds, rc, tail = _run(["demo", "--no-progress", *threads], cwd)
            record["demo"] = {"seconds": round(seconds, 1), "returncode": rc, "target_seconds": 60}
            print(f"demo: {seconds:.1f} s (exit {rc}; target about 60 s)")
            if rc:
                print(tail)
        if not args.skip_all:
            seconds, rc, tail = _run(["reproduce", "--all", "--profile", "quick", "--out", "quick", "--no-progress",
                                      *threads], cwd)
            per = {}
            for summary in sorted((cwd / "quick").glob("*/summary.json")):
                per[summary.parent.name] = json.loads(summary.read_text())["wall_time_s"]
            record["reproduce_all_quick"] = {"seconds": round(seconds, 1), "returncode": rc, "target_seconds": 900,
                                             "per_experiment_seconds": per}
            print(f"reproduce --all --profile quick: {seconds:.1f} s (exit {rc}; target 900 s)")
            for name, s in per.items():
                print(f"  {name:<26} {s:7.1f} s")
            if rc:
                print(tail)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
