"""The thread choice (nodeflow.runtime.threads) against torch's default, with and without a
competing load: the default workflow on the embedded model, a new seed per run (KSampler,
VAEDecode and SaveImage re-run), interleaved in one process.

    python tests/bench/bench_threads.py [--runs 7]

"chosen": nodeflow's rule (one thread for the embedded model); "all": torch's thread count for
every computation (the rule's threshold set to 0). The load is one busy Python process per
core but one, started for the loaded half and stopped after it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
BUSY = "while True: pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime import threads
    from nodeflow.runtime.paths import Paths

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        paths = Paths(output_dir=Path(folder) / "out", temp_dir=Path(folder) / "tmp")
        executor = Executor(Registry.load(paths), paths)
        workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
        executor.run(workflow)  # load the model once
        small_work = threads.SMALL_WORK
        seed = iter(range(10**6))

        def run(rule: str) -> float:
            threads.SMALL_WORK = small_work if rule == "chosen" else 0.0
            workflow.nodes["3"].inputs["seed"] = next(seed)
            started = time.perf_counter()
            executor.run(workflow)
            return time.perf_counter() - started

        for load in ("idle", "loaded"):
            competitors = [subprocess.Popen([sys.executable, "-c", BUSY])
                           for _ in range(max(1, (os.cpu_count() or 2) - 1))] if load == "loaded" else []
            try:
                times = {"chosen": [], "all": []}
                for _ in range(args.runs):
                    for rule in times:
                        times[rule].append(run(rule))
            finally:
                for process in competitors:
                    process.kill()
                    process.wait()
            threads.SMALL_WORK = small_work
            chosen, every = statistics.median(times["chosen"]), statistics.median(times["all"])
            print(f"{load:6}: chosen threads median {chosen:.2f} s (max {max(times['chosen']):.2f}), "
                  f"all threads median {every:.2f} s (max {max(times['all']):.2f}); ratio {chosen / every:.2f}x")


if __name__ == "__main__":
    main()
