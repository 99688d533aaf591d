"""Sweeps on a Ray cluster (nodeflow.sweeps.ray_backend, ``nodeflow run --sweep ... --ray``): one
local cluster for the module (127.0.0.1, 2 CPUs), sweeps on the embedded model with two workers:
the same images, grid and manifest as the same sweep run locally; a failing job reported while the
others finish; jobs sharing upstream work on one worker (checkpoint loaded once per worker); a
killed worker's jobs run by the other; a cancelled sweep resumed with --resume.

Without Ray installed, only the tests that need no cluster run (the error naming the extra, the
scheduling and file-transfer units)."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodeflow import cli
from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from nodeflow.formats.png import read_text_chunks
from nodeflow.runtime.paths import Paths
from nodeflow.sweeps.jobs import plan_jobs
from nodeflow.sweeps.manifest import Manifest, sweep_key
from nodeflow.sweeps.ray_backend import LOOPBACK_VARIABLE, open_pool
from nodeflow.sweeps.ray_worker import WorkerSettings
from nodeflow.sweeps.schedule import JobQueue, group_jobs, split_units
from nodeflow.sweeps.spec import parse_spec
from nodeflow.sweeps.transfer import ShippedFile, write_file
from tests.project import ROOT

WORKFLOW = ROOT / "workflows" / "txt2img.json"
CHECKPOINT = ROOT / "assets" / "nodeflow-tiny.safetensors"
TIMEOUT_S = 240  # a test that hangs (a cluster that never schedules a worker) ends the run with tracebacks
#: Three prompts by two seeds; the prompt and seed name the files. The prompt '..' makes the prefix
#: '../s1', refused when SaveImage runs: that job fails on the worker, the others finish.
PROMPT_SWEEP = ["--set", "9.filename_prefix=%6.text%/s%3.seed%",
                "--sweep", "6.text=a red circle,a blue square,..", "--sweep", "3.seed=1,2"]
needs_model = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def cluster():
    """The module's local Ray cluster (2 CPUs, on 127.0.0.1 only): its address."""
    previous = os.environ.get(LOOPBACK_VARIABLE)
    os.environ[LOOPBACK_VARIABLE] = "0"  # read when ray is imported: keeps the cluster on 127.0.0.1
    try:
        ray = import_or_skip_ray()
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                           logging_level=logging.WARNING)
        try:
            address = context.address_info["address"]
            assert address.startswith("127.0.0.1:"), address
            yield address
        finally:
            ray.shutdown()
    finally:
        if previous is None:
            os.environ.pop(LOOPBACK_VARIABLE, None)
        else:
            os.environ[LOOPBACK_VARIABLE] = previous


def import_or_skip_ray():
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'nodeflow[ray]')")
    return ray


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return Registry.load(Paths(models_dirs=(), temp_dir=tmp_path_factory.mktemp("tmp")))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``nodeflow`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def images_by_job(folder: Path) -> Counter:
    """How many images of each job (their ``sweep`` chunk) are under ``folder``, grids left out."""
    found: Counter = Counter()
    for path in folder.rglob("*.png"):
        if not path.name.startswith(".") and "sweeps" not in path.relative_to(folder).parts:
            found[json.loads(read_text_chunks(path)["sweep"])["job"]] += 1
    return found


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- the same sweep locally and on Ray ----------------------------------------------------------

@pytest.fixture(scope="module")
def prompt_sweeps(cluster, tmp_path_factory):
    """PROMPT_SWEEP in this process and on the cluster (two workers): code, summary, stderr, manifest."""
    root = tmp_path_factory.mktemp("prompt_sweeps")
    runs = {}
    for name, extra in (("local", []), ("ray", ["--ray", cluster, "--ray-workers", "2"])):
        out = root / name
        code, stdout, stderr = run_cli(["run", str(WORKFLOW), "--output-dir", str(out), "--device", "cpu",
                                        *PROMPT_SWEEP, *extra, "--json"])
        summary = json.loads(stdout)
        runs[name] = {"code": code, "summary": summary, "err": stderr, "out": out,
                      "manifest": json.loads(Path(summary["manifest"]).read_text())}
    return runs


def job_files(run) -> dict[int, list[str]]:
    """Per job, its files relative to the run's output folder."""
    return {job["index"]: [str(Path(f).relative_to(run["out"])) for f in job["files"]]
            for job in run["manifest"]["jobs"]}


@needs_model
def test_ray_images_equal_the_local_sweeps_with_the_same_names(prompt_sweeps):
    local, ray = prompt_sweeps["local"], prompt_sweeps["ray"]
    assert [j["status"] for j in ray["manifest"]["jobs"]] == [j["status"] for j in local["manifest"]["jobs"]] == [
        "done"] * 4 + ["failed"] * 2
    assert job_files(ray) == job_files(local)  # same sub-folders and names: prompt/seed prefix, counter 1
    assert job_files(ray)[0] == [str(Path("a red circle") / "s1_00001_.png")]
    for local_job, ray_job in zip(local["manifest"]["jobs"][:4], ray["manifest"]["jobs"][:4]):
        (local_file,), (ray_file,) = local_job["files"], ray_job["files"]
        assert np.array_equal(pixels(ray_file), pixels(local_file))
        local_text, ray_text = read_text_chunks(local_file), read_text_chunks(ray_file)
        assert ray_text["parameters"] == local_text["parameters"]
        note = json.loads(ray_text["sweep"])
        assert note == {"id": ray["manifest"]["id"], "job": ray_job["index"], "values": ray_job["values"]}
    assert images_by_job(ray["out"]) == Counter(range(4))  # every image once, nothing else


@needs_model
def test_ray_writes_the_same_grid_and_a_manifest_naming_the_workers(prompt_sweeps):
    local, ray = prompt_sweeps["local"], prompt_sweeps["ray"]
    (local_grid,), (ray_grid,) = local["summary"]["grids"], ray["summary"]["grids"]
    assert Path(ray_grid).parent == Path(ray["summary"]["manifest"]).parent
    assert np.array_equal(pixels(ray_grid), pixels(local_grid))  # X prompts, Y seeds, failed cells grey
    manifest = ray["manifest"]
    assert manifest["grids"] == [ray_grid] and manifest["axes"] == local["manifest"]["axes"]
    assert [j["values"] for j in manifest["jobs"]] == [j["values"] for j in local["manifest"]["jobs"]]
    assert {j["worker"] for j in manifest["jobs"]} == {"w1", "w2"}
    assert all(Path(f).is_file() for j in manifest["jobs"] for f in j["files"])


@needs_model
def test_a_failing_job_on_ray_is_reported_with_its_node_and_the_others_finish(prompt_sweeps):
    local, ray = prompt_sweeps["local"], prompt_sweeps["ray"]
    assert ray["code"] == local["code"] == 2  # a mistake the user can fix: the usual rule
    failures = [line for line in ray["err"].splitlines() if line.startswith("nodeflow: job ")]
    assert failures == [line for line in local["err"].splitlines() if line.startswith("nodeflow: job ")]
    assert len(failures) == 2 and failures[0].startswith("nodeflow: job 4 (6.text='..', 3.seed=1): node 9 "
                                                         "(SaveImage): input 'filename_prefix':")
    assert "'../s1' must not contain '..'" in failures[0]
    assert "[6/6 jobs]" in ray["err"] and "[w1] job #" in ray["err"] and "[w2] job #" in ray["err"]


@needs_model
def test_jobs_sharing_upstream_work_run_on_one_worker_loading_the_model_once(prompt_sweeps):
    jobs = prompt_sweeps["ray"]["manifest"]["jobs"]
    by_prompt: dict[str, set] = {}
    for job in jobs:
        by_prompt.setdefault(job["values"]["6.text"], set()).add(job["worker"])
    assert all(len(workers) == 1 for workers in by_prompt.values()), by_prompt
    done = [job for job in jobs if job["status"] == "done"]
    loads = Counter(job["worker"] for job in done for node in job["executed"] if node == "4")
    assert loads == Counter({"w1": 1, "w2": 1})  # the checkpoint loaded once on each worker
    encodes = Counter(job["values"]["6.text"] for job in done for node in job["executed"] if node == "6")
    assert encodes == Counter({"a red circle": 1, "a blue square": 1})  # each prompt encoded once
    assert all(set(job["cached"]) >= {"4", "6"} for job in done if job["values"]["3.seed"] == 2)


# --- workers that die, Ctrl-C, --resume ---------------------------------------------------------

def seed_manifest(registry, out: Path, seeds: str = "1..4"):
    workflow = load_workflow(WORKFLOW, registry)
    spec = parse_spec([f"3.seed={seeds}"], workflow, registry)
    plan = plan_jobs(spec, workflow, registry)
    manifest = Manifest.create(out / "sweeps" / "s" / "manifest.json", key=sweep_key(workflow, spec),
                               workflow_name=str(WORKFLOW), output_dir=out, spec=spec, plan=plan)
    return workflow, manifest, list(plan.jobs)


@needs_model
def test_a_killed_workers_jobs_run_on_the_other_worker_each_image_once(cluster, registry, tmp_path, caplog):
    out = tmp_path / "out"
    workflow, manifest, jobs = seed_manifest(registry, out)
    killed = []

    def started(job, worker):  # SIGKILL the second worker as it gets its first job
        if worker.name == "w2" and not killed:
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(job.index)

    with open_pool(cluster, WorkerSettings(workflow.to_dict(), device="cpu"), 2, jobs) as pool:
        outcome = pool.run(workflow, registry, manifest, on_job_started=started)
    assert killed == [2]  # w2 was given the second half: jobs 2 and 3
    assert [r.status for r in outcome.results] == ["done"] * 4 and not outcome.cancelled
    data = json.loads(manifest.path.read_text())
    assert [j["worker"] for j in data["jobs"]] == ["w1"] * 4
    assert images_by_job(out) == Counter(range(4))
    assert any("worker w2" in r.message and "died running job 2" in r.message for r in caplog.records)


@needs_model
def test_ctrl_c_stops_a_ray_sweep_keeping_what_finished_and_resume_runs_the_rest(cluster, tmp_path):
    """A real SIGINT to a `nodeflow run --ray ADDRESS` process (connecting to the module's cluster),
    then --resume in this process: every job's image exactly once, nothing finished redone."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nodeflow", "run", str(WORKFLOW), "--output-dir", str(out), "--device", "cpu",
               "--sweep", "3.seed=1..4", "--ray", cluster, "--ray-workers", "1"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # Ctrl-C once the first job is back: the second is running
        lines.append(line)
        if line.startswith("[1/4 jobs]"):
            process.send_signal(signal.SIGINT)
            break
    lines += process.stderr.readlines()
    assert process.wait(timeout=60) == 130, "".join(lines)
    (manifest_path,) = out.glob("sweeps/*/manifest.json")
    before = json.loads(manifest_path.read_text())
    done_before = {j["index"]: j["files"] for j in before["jobs"] if j["status"] == "done"}
    assert 0 in done_before and len(done_before) < 4, "".join(lines)
    stamps = {f: os.stat(f).st_mtime_ns for files in done_before.values() for f in files}

    code, stdout, stderr = run_cli(["run", str(WORKFLOW), "--resume", str(manifest_path), "--sweep", "3.seed=1..4",
                                    "--device", "cpu", "--ray", cluster, "--ray-workers", "2", "--json", "-q"])
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["skipped"] == sorted(done_before)
    assert [j["index"] for j in summary["jobs"]] == sorted(set(range(4)) - set(done_before))
    assert all(os.stat(f).st_mtime_ns == stamp for f, stamp in stamps.items())  # nothing finished was redone
    assert images_by_job(out) == Counter(range(4))  # every job's image, exactly once
    assert [j["status"] for j in json.loads(manifest_path.read_text())["jobs"]] == ["done"] * 4


# --- errors before any work ---------------------------------------------------------------------

@needs_model
def test_a_model_missing_on_the_workers_is_refused_before_any_job(cluster, tmp_path):
    """The driver has no say on model files: each worker checks every value on its own folders."""
    code, _, err = run_cli(["run", str(WORKFLOW), "--output-dir", str(tmp_path / "out"), "--device", "cpu",
                            "--sweep", "4.ckpt_name=nodeflow-tiny.safetensors,missing.safetensors",
                            "--ray", cluster, "--ray-workers", "1"])
    assert code == 2 and "Traceback" not in err, err
    assert "on worker w1" in err and "node 4 (CheckpointLoaderSimple), input 'ckpt_name'" in err, err
    assert "'missing.safetensors'" in err and "'nodeflow-tiny.safetensors'" not in err.split("not one of")[0], err
    assert not (tmp_path / "out").exists()


def test_ray_not_installed_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = run_cli(["run", str(WORKFLOW), "--output-dir", str(tmp_path / "out"), "--sweep", "3.seed=1,2",
                            "--ray"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "pip install 'nodeflow[ray]'" in err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_is_one_line_before_any_work(tmp_path):
    import_or_skip_ray()
    code, _, err = run_cli(["run", str(WORKFLOW), "--output-dir", str(tmp_path / "out"), "--sweep", "3.seed=1,2",
                            "--ray", "127.0.0.1:1"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("nodeflow: --ray 127.0.0.1:1: no Ray cluster answers there")
    assert not (tmp_path / "out").exists()


def test_nodeflow_imports_ray_only_for_a_ray_sweep():
    code = ("import sys\n"
            "import nodeflow.cli, nodeflow.sweeps.ray_backend, nodeflow.sweeps.ray_worker\n"
            "nodeflow.cli.build_parser().parse_args(['run', 'w.json', '--sweep', '3.seed=1,2', '--ray'])\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- scheduling and file transfer, without a cluster -------------------------------------------

def test_jobs_group_by_their_upstream_values_and_split_for_idle_workers(registry):
    workflow = load_workflow(WORKFLOW, registry)
    spec = parse_spec(["3.seed=1..3", "6.text=a,b"], workflow, registry)
    plan = plan_jobs(spec, workflow, registry)
    axes = [axis.to_dict() for axis in plan.axes]
    groups = group_jobs(list(plan.jobs), axes, workflow, registry)
    assert [[plan.jobs[i].values["6.text"] for i in group] for group in groups] == [["a"] * 3, ["b"] * 3]
    assert split_units(groups, 2) == groups
    assert split_units(groups, 3) == [[0, 1], [2], [3, 4, 5]]
    (only,) = group_jobs(list(plan_jobs(parse_spec(["3.seed=1..4"], workflow, registry), workflow, registry).jobs),
                         [{"keys": ["3.seed"]}], workflow, registry)
    assert split_units([only], 2) == [[0, 1], [2, 3]] and split_units([[0]], 4) == [[0]]


def test_a_dead_workers_jobs_wait_first_in_line():
    queue = JobQueue([[0, 1, 2], [3, 4], [5]])
    assert [queue.next_job("a"), queue.next_job("b"), queue.next_job("a")] == [0, 3, 1]
    queue.give_back("b", [3])  # b died running 3: 3 and the rest of its unit (4) go first
    assert queue.remaining() == [2, 3, 4, 5]
    assert [queue.next_job("a"), queue.next_job("a"), queue.next_job("a"), queue.next_job("a")] == [2, 3, 4, 5]
    assert queue.next_job("a") is None and queue.remaining() == []


def test_shipped_files_keep_their_folder_and_prefix_and_never_overwrite(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img_00001_.png").write_bytes(b"earlier")
    written = write_file(ShippedFile("9", "/w/job-1/sub/img_00001_.png", "sub/img_00001_.png", b"new"), tmp_path)
    assert written == tmp_path / "sub" / "img_00002_.png" and written.read_bytes() == b"new"
    assert (tmp_path / "sub" / "img_00001_.png").read_bytes() == b"earlier"
    assert write_file(ShippedFile("9", "/w/x", "d/_00001_.png", b"x"), tmp_path) == tmp_path / "d" / "_00001_.png"
    with pytest.raises(ValueError, match="must not contain '..'"):
        write_file(ShippedFile("9", "/w/x", "../up_00001_.png", b"x"), tmp_path)
