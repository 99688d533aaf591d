"""An 8-seed sweep on the embedded model in one process versus 8 separate `nodeflow run` processes.

    OMP_NUM_THREADS=1 python tests/bench/bench_sweep.py [--seeds 8] [--rounds 1]

Both sides are what a user types: ``nodeflow run workflows/txt2img.json --sweep 3.seed=1..8``
(one process: the model loads once, the prompts are encoded once) against
``nodeflow run workflows/txt2img.json --set 3.seed=K`` for K = 1..8 (eight processes, one after
the other). Prints the wall-time ratio (target <= 0.25), the share of nodes the sweep served from
its cache, and the machine and its load (the machine is shared: load changes the figures).
With ``--rounds N`` the two sides alternate N times and the best of each is kept.
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

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "txt2img.json"


def nodeflow(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, "-m", "nodeflow", "run", str(WORKFLOW), *arguments, "-q"], cwd=cwd,
                          env=env, capture_output=True, text=True, check=True)


def sweep_once(seeds: int, folder: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = nodeflow("--sweep", f"3.seed=1..{seeds}", "--json", "--device", "cpu",
                    "--output-dir", str(folder / "sweep"), cwd=folder)
    return time.perf_counter() - started, json.loads(done.stdout)


def separate_runs(seeds: int, folder: Path) -> float:
    started = time.perf_counter()
    for seed in range(1, seeds + 1):
        nodeflow("--set", f"3.seed={seed}", "--device", "cpu", "--output-dir", str(folder / "single"), cwd=folder)
    return time.perf_counter() - started


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return (f"{platform.machine()} {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sweep_times, single_times, summary = [], [], {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for _ in range(args.rounds):
            seconds, summary = sweep_once(args.seeds, folder)
            sweep_times.append(seconds)
            single_times.append(separate_runs(args.seeds, folder))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sweep, single = min(sweep_times), min(single_times)
    run, cached = summary["nodes_run"], summary["nodes_cached"]
    per_job = [job["seconds"] for job in summary["jobs"]]
    print(f"{args.seeds}-seed sweep, one process: {sweep:.2f} s (jobs: first {per_job[0]:.2f} s, "
          f"then {min(per_job[1:]):.2f}-{max(per_job[1:]):.2f} s)")
    print(f"{args.seeds} separate `nodeflow run` processes: {single:.2f} s ({single / args.seeds:.2f} s each)")
    print(f"wall-time ratio sweep / separate: {sweep / single:.3f} (target <= 0.25)")
    print(f"nodes served from the sweep's cache: {cached} of {run + cached} = {100 * cached / (run + cached):.0f}%")


if __name__ == "__main__":
    main()
