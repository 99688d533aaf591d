"""Time the default workflow (workflows/txt2img.json on the embedded model) end to end.

    python tests/bench/bench_default_workflow.py

Prints the cold run (fresh process state: model load included), warm runs with a new seed
(only KSampler, VAEDecode and SaveImage re-run) and the CLI as a user runs it (a new process).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from nodeflow.engine.executor import Executor
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow

    with tempfile.TemporaryDirectory() as folder:
        paths = Paths(output_dir=Path(folder) / "out", temp_dir=Path(folder) / "tmp")
        registry = Registry.load(paths)
        executor = Executor(registry, paths)
        workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
        started = time.perf_counter()
        executor.run(workflow)
        cold = time.perf_counter() - started
        warm = []
        for seed in range(3):
            workflow.nodes["3"].inputs["seed"] = 100 + seed
            started = time.perf_counter()
            executor.run(workflow)
            warm.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nodeflow.cli", "run", str(ROOT / "workflows" / "txt2img.json"),
                        "--output-dir", str(Path(folder) / "cli")], check=True, capture_output=True)
        cli = time.perf_counter() - started
    print(f"default workflow, in process: cold {cold:.2f} s, new seed {min(warm):.2f} s (best of 3)")
    print(f"default workflow, `nodeflow run` in a new process: {cli:.2f} s")


if __name__ == "__main__":
    main()
