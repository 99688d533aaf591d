"""The 8-seed sweep of bench_sweep.py in one process versus on a local Ray cluster with 1 and 2 workers.

    OMP_NUM_THREADS=1 python tests/bench/bench_sweep_ray.py [--seeds 8] [--rounds 1]

Needs Ray (``pip install 'nodeflow[ray]'``). Starts one local cluster (127.0.0.1, 2 CPUs) and runs,
through the same code the CLI uses, the sweep ``3.seed=1..N`` on the embedded model: in this
process (``run_sweep`` on one executor), then on 1 and on 2 Ray workers (``open_pool`` +
``RayPool.run``). Prints for each: the workers' start (processes, imports, checking the workflow),
the sweep's wall time (first job handed out to last file written, models loaded in it), and the
overhead per job on Ray: the sweep's wall time less the time the jobs took on their worker, per job
(handing out, the bytes coming back, writing the files and the manifest; target < 50 ms). Then the
speedup of the second worker. The machine is shared: its load is printed, and with ``--rounds N``
the best of N is kept.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_sweep import machine  # noqa: E402

WORKFLOW = ROOT / "workflows" / "txt2img.json"


def sweep_setup(seeds: int, out: Path):
    """The workflow, registry, a new manifest of ``3.seed=1..seeds`` in ``out``, and its jobs."""
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths
    from nodeflow.sweeps.jobs import plan_jobs
    from nodeflow.sweeps.manifest import Manifest, sweep_key
    from nodeflow.sweeps.spec import parse_spec

    paths = Paths(models_dirs=(), output_dir=out, temp_dir=out / "tmp")
    registry = Registry.load(paths)
    workflow = load_workflow(WORKFLOW, registry)
    spec = parse_spec([f"3.seed=1..{seeds}"], workflow, registry)
    plan = plan_jobs(spec, workflow, registry)
    manifest = Manifest.create(out / "sweeps" / "bench" / "manifest.json", key=sweep_key(workflow, spec),
                               workflow_name=str(WORKFLOW), output_dir=out, spec=spec, plan=plan)
    return paths, registry, workflow, manifest, list(plan.jobs)


def local_sweep(seeds: int, out: Path) -> dict[str, float]:
    from nodeflow.engine.executor import Executor
    from nodeflow.sweeps.run import run_sweep

    paths, registry, workflow, manifest, _ = sweep_setup(seeds, out)
    started = time.perf_counter()
    outcome = run_sweep(Executor(registry, paths), workflow, manifest, device="cpu", preview_every=0)
    assert all(r.status == "done" for r in outcome.results), outcome.results
    return {"start": 0.0, "sweep": time.perf_counter() - started, "jobs": sum(r.seconds for r in outcome.results)}


def ray_sweep(address: str, workers: int, seeds: int, out: Path) -> dict[str, float]:
    from nodeflow.sweeps.ray_backend import open_pool
    from nodeflow.sweeps.ray_worker import WorkerSettings

    _, registry, workflow, manifest, jobs = sweep_setup(seeds, out)
    started = time.perf_counter()
    with open_pool(address, WorkerSettings(workflow.to_dict(), device="cpu"), workers, jobs) as pool:
        ready = time.perf_counter()
        outcome = pool.run(workflow, registry, manifest)
        finished = time.perf_counter()
    assert all(r.status == "done" for r in outcome.results), outcome.results
    return {"start": ready - started, "sweep": finished - ready, "jobs": sum(r.seconds for r in outcome.results)}


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return min(runs, key=lambda run: run["sweep"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from nodeflow.sweeps.ray_backend import LOOPBACK_VARIABLE

    os.environ.setdefault(LOOPBACK_VARIABLE, "0")  # keep the cluster on 127.0.0.1
    import ray

    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    started = time.perf_counter()
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                       logging_level=logging.WARNING)
    print(f"local Ray cluster started in {time.perf_counter() - started:.1f} s at {context.address_info['address']}")
    results: dict[str, list[dict[str, float]]] = {"local": [], "ray 1": [], "ray 2": []}
    try:
        with tempfile.TemporaryDirectory() as name:
            local_sweep(1, Path(name) / "warm-up")  # this process's imports, as the workers' happen at their start
            for round_ in range(args.rounds):
                folder = Path(name) / str(round_)
                results["local"].append(local_sweep(args.seeds, folder / "local"))
                for workers in (1, 2):
                    run = ray_sweep(context.address_info["address"], workers, args.seeds, folder / f"ray{workers}")
                    results[f"ray {workers}"].append(run)
    finally:
        ray.shutdown()
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    local, one, two = best(results["local"]), best(results["ray 1"]), best(results["ray 2"])
    n = args.seeds
    print(f"{n}-seed sweep in this process: {local['sweep']:.2f} s ({local['sweep'] / n * 1000:.0f} ms per job)")
    overhead = (one["sweep"] - one["jobs"]) / n
    print(f"{n}-seed sweep on 1 Ray worker: workers started in {one['start']:.1f} s, sweep {one['sweep']:.2f} s "
          f"(the jobs took {one['jobs']:.2f} s on the worker); overhead per job {overhead * 1000:.0f} ms "
          f"(target < 50 ms)")
    print(f"{n}-seed sweep on 2 Ray workers: workers started in {two['start']:.1f} s, sweep {two['sweep']:.2f} s "
          f"(the jobs took {two['jobs']:.2f} s on the workers, in all)")
    print(f"1 Ray worker vs this process: {(one['sweep'] - local['sweep']) / n * 1000:+.0f} ms per job")
    print(f"speedup of the second worker: {one['sweep'] / two['sweep']:.2f}x (2 cores shared by the workers)")


if __name__ == "__main__":
    main()
