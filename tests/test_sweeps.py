"""Parameter sweeps (nodeflow.sweeps, ``nodeflow run --sweep``): values parsed and checked before
any work, jobs ordered for the cache and run in one executor, images never overwritten and
carrying their values, grids, the manifest, --resume after SIGKILL, --repeat's seed behaviour.

The runs use the embedded model (workflows/txt2img.json, 64x64, 20 steps)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodeflow import cli
from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import save_workflow
from nodeflow.formats import load_workflow
from nodeflow.formats.png import read_png_workflow, read_text_chunks
from nodeflow.runtime.paths import Paths
from nodeflow.sweeps import grid as grids
from nodeflow.sweeps.jobs import plan_jobs
from nodeflow.sweeps.manifest import Manifest, sweep_key
from nodeflow.sweeps.run import run_sweep
from nodeflow.sweeps.seeds import next_seed, seeds_for_runs
from nodeflow.sweeps.spec import parse_spec
from tests.project import ROOT

WORKFLOW = ROOT / "workflows" / "txt2img.json"
CHECKPOINT = ROOT / "assets" / "nodeflow-tiny.safetensors"
pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    return Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                 temp_dir=root / "tmp")


@pytest.fixture(scope="module")
def registry(folders):
    return Registry.load(folders)


def txt2img(registry):
    return load_workflow(WORKFLOW, registry)


def spec_of(registry, *sweeps, workflow=None, **options):
    return parse_spec(list(sweeps), workflow or txt2img(registry), registry, **options)


# --- VALUES: each form, parsed by the input's type -------------------------------------------

@pytest.mark.parametrize("text, values", [
    ("3.seed=4,6,8", [4, 6, 8]),
    ("3.seed=1..8", [1, 2, 3, 4, 5, 6, 7, 8]),
    ("3.seed=1..20:4", [1, 5, 9, 13, 17]),
    ("3.seed=5..1", [5, 4, 3, 2, 1]),
    ("3.seed=0x10, 7", [16, 7]),
    ("3.cfg=0.5..1.0:0.25", [0.5, 0.75, 1.0]),
    ("3.cfg=0.1..0.3:0.1", [0.1, 0.2, 0.3]),  # rounded: not 0.30000000000000004
    ("3.cfg=2..4", [2.0, 3.0, 4.0]),  # an integer range on a FLOAT input gives floats
    ("3.steps=2.0..6.0:2.0", [2, 4, 6]),  # a float range of whole numbers on an INT input
    ("3.sampler_name=euler, heun", ["euler", "heun"]),
    (r"6.text=a red circle\, small,a star", ["a red circle, small", "a star"]),
    ("6.text=1..3", ["1..3"]),  # text is never a range
])
def test_each_values_form_parses_by_the_input_type(registry, text, values):
    (sweep,) = spec_of(registry, text).sweeps
    assert list(sweep.values) == values
    assert [type(v) for v in sweep.values] == [type(v) for v in values]


def test_a_values_file_gives_one_value_per_line_commas_kept(registry, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle, on blue\n\n  a green star  \r\na (yellow:1.2) square\n", encoding="utf-8")
    (sweep,) = spec_of(registry, f"6.text=@{prompts}").sweeps
    assert sweep.values == ("a red circle, on blue", "a green star", "a (yellow:1.2) square")


BAD_SWEEPS = [
    (["3.seed=1,x"], ["node 3 (KSampler)", "'seed'", "'x' is not an integer"]),
    (["3.cfg=50..150:50"], ["node 3 (KSampler)", "'cfg'", "150.0 is above the maximum 100"]),
    (["3.sampler_name=euler,eulr"], ["node 3 (KSampler)", "'sampler_name'", "'eulr' is not one of"]),
    (["4.ckpt_name=nodeflow-tiny.safetensors,missing.safetensors"],
     ["node 4 (CheckpointLoaderSimple)", "'ckpt_name'", "'missing.safetensors' is not one of"]),
    (["9x.seed=1,2"], ["no node '9x'"]),
    (["3.sed=1,2"], ["node 3 (KSampler) has no input 'sed'"]),
    (["3.model=1"], ["node 3 (KSampler)", "'model' takes a link"]),
    (["3.seed=8..1:1"], ["node 3 (KSampler)", "'seed'", "'8..1:1' is empty"]),
    (["3.seed=1..3:0"], ["'seed'", "'1..3:0' has a step of 0"]),
    (["3.cfg=0.5..1.0"], ["'cfg'", "needs a step"]),
    (["3.steps=1.5..3.5:1.0"], ["'steps'", "1.5 is not an integer"]),
    (["3.seed="], ["'seed'", "no values given"]),
    (["3.seed=1,,2"], ["'seed'", "value 2 of '1,,2' is empty"]),
    (["6.text=@no-such-file.txt"], ["node 6 (CLIPTextEncode)", "'text'", "no-such-file.txt", "cannot read"]),
    (["3.seed=1,2", "3.seed=3"], ["3.seed is swept twice"]),
    (["3.seed=1,2", "3.cfg=4,5,6", "--zip"], ["--zip needs sweeps of equal length", "3.seed has 2", "3.cfg has 3"]),
    (["3.seed=1,2", "--repeat", "0"], ["--repeat 0"]),
    (["3.seed=0..20000"], ["20001 values; at most 10000"]),
]


@pytest.mark.parametrize("arguments, expected", BAD_SWEEPS)
def test_a_bad_sweep_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, monkeypatch, arguments, expected):
    monkeypatch.chdir(tmp_path)
    argv = ["run", str(WORKFLOW), "--output-dir", str(tmp_path / "out"), "--device", "cpu"]
    for argument in arguments:
        argv += [argument] if argument.startswith("--") or argument.isdigit() else ["--sweep", argument]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_the_cli_process_exits_2_with_one_line(tmp_path):
    command = [sys.executable, "-m", "nodeflow", "run", str(WORKFLOW), "--output-dir", str(tmp_path / "out"),
               "--sweep", "3.seed=1..3", "--sweep", "3.denoise=0.5,1.5"]
    process = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == [
        "nodeflow: --sweep '3.denoise=0.5,1.5': node 3 (KSampler), input 'denoise': 1.5 is above the maximum 1"]
    assert not (tmp_path / "out").exists()


# --- jobs: counts and order ------------------------------------------------------------------

def test_cartesian_multiplies_and_zip_pairs(registry):
    workflow = txt2img(registry)
    product = plan_jobs(spec_of(registry, "3.seed=1..3", "3.cfg=4,6"), workflow, registry)
    assert len(product.jobs) == 6
    assert sorted((j.values["3.seed"], j.values["3.cfg"]) for j in product.jobs) == [
        (s, c) for s in (1, 2, 3) for c in (4.0, 6.0)]
    zipped = plan_jobs(spec_of(registry, "3.seed=1..3", "3.cfg=4,6,8", zip=True), workflow, registry)
    assert [(j.values["3.seed"], j.values["3.cfg"]) for j in zipped.jobs] == [(1, 4.0), (2, 6.0), (3, 8.0)]
    assert len(zipped.axes) == 1 and zipped.axes[0].labels == ("seed=1, cfg=4.0", "seed=2, cfg=6.0", "seed=3, cfg=8.0")
    assert [j.index for j in product.jobs] == list(range(6))
    assert len({j.cell for j in product.jobs}) == 6


def changes(jobs, key):
    return sum(a.values[key] != b.values[key] for a, b in zip(jobs, jobs[1:]))


@pytest.mark.parametrize("flags", [("3.seed=1..3", "6.text=a,b", "5.width=64,72"),
                                   ("5.width=64,72", "6.text=a,b", "3.seed=1..3")])
def test_the_most_downstream_input_varies_fastest(registry, flags):
    """The graph runs 4 (loader), 5 (empty latent), 6, 7 (prompts), 3 (sampler): whatever the order
    of the options, the latent size changes once, the prompt 3 times, the seed at every job."""
    plan = plan_jobs(spec_of(registry, *flags), txt2img(registry), registry)
    assert len(plan.jobs) == 12
    assert changes(plan.jobs, "5.width") == 1
    assert changes(plan.jobs, "6.text") == 3
    assert changes(plan.jobs, "3.seed") == 11
    assert [plan.axes[a].name for a in plan.nesting] == ["5.width", "6.text", "3.seed"]
    assert plan.axes[0].name == flags[0].split("=")[0]  # the grid keeps the options' order


# --- a real sweep on the embedded model --------------------------------------------------------

@pytest.fixture(scope="module")
def seed_sweep(registry, folders):
    """A 3-seed sweep in a fresh executor; files named by the seed through a prefix placeholder; a
    file that already has the first name must stay untouched."""
    workflow = txt2img(registry)
    workflow.nodes["9"].inputs["filename_prefix"] = "swept/seed%KSampler.seed%"
    (folders.output_dir / "swept").mkdir(parents=True)
    blocker = folders.output_dir / "swept" / "seed1_00001_.png"
    blocker.write_bytes(b"not an image: must survive")
    spec = spec_of(registry, "3.seed=1..3", workflow=workflow, paths=folders)
    plan = plan_jobs(spec, workflow, registry)
    manifest = Manifest.create(folders.output_dir / "sweeps" / "s1" / "manifest.json", key=sweep_key(workflow, spec),
                               workflow_name=str(WORKFLOW), output_dir=folders.output_dir, spec=spec, plan=plan)
    executor = Executor(registry, folders)
    outcome = run_sweep(executor, workflow, manifest, device="cpu", preview_every=0)
    return {"outcome": outcome, "manifest": manifest, "executor": executor, "workflow": workflow,
            "blocker": blocker}


def test_a_seed_sweep_loads_the_model_and_encodes_the_prompts_once(seed_sweep):
    results = seed_sweep["outcome"].results
    assert [r.status for r in results] == ["done"] * 3
    executed = Counter(node for r in results for node in r.executed)
    assert executed["4"] == 1 and executed["6"] == 1 and executed["7"] == 1 and executed["5"] == 1
    assert executed["3"] == 3 and executed["8"] == 3 and executed["9"] == 3
    for result in results[1:]:
        assert set(result.cached) == {"4", "5", "6", "7"}


def test_sweep_images_are_new_files_carrying_their_values(seed_sweep):
    results = seed_sweep["outcome"].results
    assert seed_sweep["blocker"].read_bytes() == b"not an image: must survive"
    files = [Path(f) for r in results for f in r.files]
    assert len(files) == 3 and len(set(files)) == 3 and all(f.is_file() for f in files)
    assert [f.name for f in files] == ["seed1_00002_.png", "seed2_00001_.png", "seed3_00001_.png"]
    pixels = [np.asarray(Image.open(f)) for f in files]
    assert not np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[1], pixels[2])
    manifest = seed_sweep["manifest"]
    for job, path in zip(manifest.jobs, files):
        chunks = read_text_chunks(path)
        note = json.loads(chunks["sweep"])
        assert note == {"id": manifest.id, "job": job["index"], "values": {"3.seed": job["values"]["3.seed"]}}
        assert f"Seed: {job['values']['3.seed']}," in chunks["parameters"]
        embedded = read_png_workflow(path)
        assert embedded.nodes["3"].inputs["seed"] == job["values"]["3.seed"]
        assert "image_text" not in embedded.ui  # the job's note is not carried on by the workflow


def test_the_manifest_lists_every_job_its_values_files_and_status(seed_sweep):
    manifest = seed_sweep["manifest"]
    data = json.loads(manifest.path.read_text())
    assert data["format"] == "nodeflow-sweep-manifest" and data["id"] == manifest.id
    assert data["key"] == sweep_key(seed_sweep["workflow"], parse_spec(
        ["3.seed=1..3"], seed_sweep["workflow"], seed_sweep["executor"].registry))
    assert [j["values"] for j in data["jobs"]] == [{"3.seed": 1}, {"3.seed": 2}, {"3.seed": 3}]
    assert [j["status"] for j in data["jobs"]] == ["done"] * 3
    assert [j["files"] for j in data["jobs"]] == [r.files for r in seed_sweep["outcome"].results]
    assert [j["cell"] for j in data["jobs"]] == [[0], [1], [2]]
    assert data["axes"] == [{"name": "3.seed", "title": "seed (KSampler 3)", "keys": ["3.seed"],
                             "labels": ["1", "2", "3"]}]
    assert data["grids"] == [str(manifest.path.parent / "grid.png")]


def test_the_grid_of_one_sweep_is_a_row_of_the_images(seed_sweep):
    results = seed_sweep["outcome"].results
    (grid_path,) = seed_sweep["outcome"].grids
    grid = np.asarray(Image.open(grid_path).convert("RGB"))
    font = grids.ImageFont.truetype(str(grids.font_file()), grids.font_size((64, 64)))
    layout = grids.plan_layout((64, 64), ["1", "2", "3"], None, ["X: seed (KSampler 3)"], font)
    assert grid.shape[:2] == (layout.height, layout.width) and layout.rows == 1
    for column, result in enumerate(results):
        x0, y0, x1, y1 = layout.cell_box(column, 0)
        assert np.array_equal(grid[y0:y1, x0:x1], np.asarray(Image.open(result.files[0]).convert("RGB")))


# --- --repeat: the editor's seed behaviour -----------------------------------------------------

def with_seed_mode(registry, mode, seed=42):
    workflow = txt2img(registry)
    workflow.nodes["3"].inputs["seed"] = seed
    workflow.ui["seed_control"] = {"3": {"seed": mode}}
    workflow.nodes["9"].inputs["filename_prefix"] = f"repeat_{mode}"
    return workflow


def run_repeat(seed_sweep, registry, folders, mode, seed, runs=3):
    workflow = with_seed_mode(registry, mode, seed)
    spec = parse_spec([], workflow, registry, repeat=runs)
    plan = plan_jobs(spec, workflow, registry)
    manifest = Manifest.create(folders.output_dir / "sweeps" / mode / "manifest.json", key=sweep_key(workflow, spec),
                               workflow_name="w", output_dir=folders.output_dir, spec=spec, plan=plan)
    return plan, run_sweep(seed_sweep["executor"], workflow, manifest, device="cpu", preview_every=0)


def test_repeat_with_an_incrementing_seed_makes_new_images(seed_sweep, registry, folders):
    plan, outcome = run_repeat(seed_sweep, registry, folders, "increment", 42)
    assert [j.values for j in plan.jobs] == [{"3.seed": 42}, {"3.seed": 43}, {"3.seed": 44}]
    files = [f for r in outcome.results for f in r.files]
    assert len(files) == 3 and len(set(files)) == 3
    assert [json.loads(read_text_chunks(f)["sweep"])["values"]["3.seed"] for f in files] == [42, 43, 44]
    assert all("3" in r.executed for r in outcome.results)


def test_repeat_with_a_fixed_seed_runs_once_and_reuses_the_image(seed_sweep, registry, folders):
    plan, outcome = run_repeat(seed_sweep, registry, folders, "fixed", 1234)
    assert [j.values for j in plan.jobs] == [{"3.seed": 1234}] * 3
    first, *others = outcome.results
    assert len(first.files) == 1 and "3" in first.executed
    for result in others:
        assert result.status == "done" and result.files == [] and result.reused == first.files
        assert "3" in result.cached and result.executed == []


def test_repeat_seeds_follow_the_editors_rules(registry):
    """--repeat moves seeds on by the editor's rules (nodeflow.gui.seed_control applies the same
    functions through its document), randomize included."""
    from nodeflow.gui import seed_control

    for mode in ("fixed", "increment", "decrement", "randomize"):
        runs = seeds_for_runs(with_seed_mode(registry, mode), registry, 4, random.Random(7))
        expected, rng = [42], random.Random(7)
        for _ in range(3):
            expected.append(seed_control.next_seed(expected[-1], mode, rng))
        assert [r["3.seed"] for r in runs] == expected
        assert next_seed(0, "decrement") == 2**64 - 1  # wraps to the top
    no_mode = seeds_for_runs(txt2img(registry), registry, 2, random.Random(1))
    assert no_mode[0] == {"3.seed": 42} and no_mode[1] != no_mode[0]  # randomize, as the editor's default


# --- grids: layout for 1, 2 and 3 sweeps -------------------------------------------------------

COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
          (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def synthetic_sweep(tmp_path, sizes, missing=()):
    """Manifest data of a finished sweep with axes of ``sizes``: each job's image a solid colour."""
    import itertools

    axes = [{"name": f"{n}.x", "title": f"axis {n}", "keys": [f"{n}.x"], "labels": [f"v{n}{i}" for i in range(size)]}
            for n, size in enumerate(sizes)]
    jobs = []
    for index, cell in enumerate(itertools.product(*(range(s) for s in sizes))):
        path = tmp_path / f"job{index}.png"
        Image.new("RGB", (32, 24), COLORS[index]).save(path)
        jobs.append({"index": index, "cell": list(cell), "files": [str(path)],
                     "status": "failed" if index in missing else "done"})
    return {"axes": axes, "jobs": jobs}


def cell_colors(path, layout):
    grid = np.asarray(Image.open(path).convert("RGB"))
    assert grid.shape[:2] == (layout.height, layout.width)
    found = {}
    for row in range(layout.rows):
        for column in range(layout.columns):
            x0, y0, x1, y1 = layout.cell_box(column, row)
            block = grid[y0:y1, x0:x1].reshape(-1, 3)
            assert (block == block[0]).all()  # one image exactly fills the cell
            found[(column, row)] = tuple(int(v) for v in block[0])
    return grid, found


def layout_of(data, legend):
    x_labels = data["axes"][0]["labels"]
    y_labels = data["axes"][1]["labels"] if len(data["axes"]) > 1 else None
    font = grids.ImageFont.truetype(str(grids.font_file()), grids.font_size((32, 24)))
    return grids.plan_layout((32, 24), x_labels, y_labels, legend, font)


def test_one_sweep_draws_a_row(tmp_path):
    data = synthetic_sweep(tmp_path, [4], missing={2})
    (path,) = grids.draw_sweep_grids(data, tmp_path)
    layout = layout_of(data, ["X: axis 0"])
    grid, found = cell_colors(path, layout)
    assert (layout.columns, layout.rows) == (4, 1) and layout.left == layout.pad  # no row labels
    assert found == {(0, 0): COLORS[0], (1, 0): COLORS[1], (2, 0): grids.MISSING, (3, 0): COLORS[3]}
    for column in range(4):  # a label above each column
        x0, y0, x1, _ = layout.cell_box(column, 0)
        assert (grid[layout.legend_height:y0, x0:x1] < 100).any()


def test_two_sweeps_draw_x_across_and_y_down(tmp_path):
    data = synthetic_sweep(tmp_path, [3, 2])
    (path,) = grids.draw_sweep_grids(data, tmp_path)
    layout = layout_of(data, ["X: axis 0", "Y: axis 1"])
    grid, found = cell_colors(path, layout)
    assert (layout.columns, layout.rows) == (3, 2)
    for job in data["jobs"]:
        assert found[tuple(job["cell"])] == COLORS[job["index"]]
    for row in range(2):  # a label left of each row
        x0, y0, _, y1 = layout.cell_box(0, row)
        assert (grid[y0:y1, :x0] < 100).any()


def test_three_sweeps_draw_one_grid_per_z_value(tmp_path):
    data = synthetic_sweep(tmp_path, [2, 2, 3])
    paths = grids.draw_sweep_grids(data, tmp_path)
    assert [p.name for p in paths] == ["grid_01.png", "grid_02.png", "grid_03.png"]
    for z, path in enumerate(paths):
        layout = layout_of(data, ["X: axis 0", "Y: axis 1", f"Z: axis 2 = v2{z}"])
        _, found = cell_colors(path, layout)
        expected = {(j["cell"][0], j["cell"][1]): COLORS[j["index"]] for j in data["jobs"] if j["cell"][2] == z}
        assert found == expected


# --- manifest: resume ---------------------------------------------------------------------------

def test_resume_refuses_a_manifest_of_another_sweep(seed_sweep, tmp_path, capsys):
    manifest = seed_sweep["manifest"].path
    before = sorted(seed_sweep["manifest"].output_dir.rglob("*"))
    for extra in (["--sweep", "3.seed=1..4"], ["--sweep", "3.seed=1..3", "--set", "3.cfg=7"]):
        code = cli.main(["run", str(WORKFLOW), "--resume", str(manifest), "--device", "cpu", *extra])
        err = capsys.readouterr().err
        assert code == 2 and "another sweep" in err and str(manifest) in err and len(err.splitlines()) == 1
    assert sorted(seed_sweep["manifest"].output_dir.rglob("*")) == before


def test_recover_removes_what_an_unfinished_job_saved_and_nothing_else(registry, tmp_path):
    """The window SIGKILL can hit: a job's image is saved but the manifest still says 'running'."""
    from PIL import PngImagePlugin

    workflow = txt2img(registry)
    spec = spec_of(registry, "3.seed=1,2")
    manifest = Manifest.create(tmp_path / "sweeps" / "m.json", key="k", workflow_name="w", output_dir=tmp_path,
                               spec=spec, plan=plan_jobs(spec, workflow, registry))

    def png(name, sweep_id, job):
        info = PngImagePlugin.PngInfo()
        info.add_text("sweep", json.dumps({"id": sweep_id, "job": job, "values": {}}))
        Image.new("RGB", (8, 8)).save(tmp_path / name, pnginfo=info)
        return tmp_path / name

    finished, orphan, stranger = png("a.png", manifest.id, 0), png("b.png", manifest.id, 1), png("c.png", "other", 1)
    manifest.start(0)
    manifest.finish(0, {"status": "done", "files": [str(finished)]})
    manifest.start(1)  # ... and the process died after saving b.png
    assert Manifest.load(manifest.path).recover() == [orphan]
    assert finished.is_file() and stranger.is_file() and not orphan.exists()
    assert [j["status"] for j in Manifest.load(manifest.path).jobs] == ["done", "pending"]


def images_by_job(folder):
    found = Counter()
    for path in folder.rglob("*.png"):
        if path.name.startswith(".") or "sweeps" in path.parts:
            continue
        found[json.loads(read_text_chunks(path)["sweep"])["job"]] += 1
    return found


def test_a_sweep_killed_mid_way_resumes_with_nothing_lost_or_redone(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nodeflow", "run", str(WORKFLOW), "--output-dir", str(out), "--device", "cpu",
               "--sweep", "3.seed=1..6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command + ["-q"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(p.suffix == ".png" and not p.name.startswith(".") for p in (out.iterdir() if out.is_dir() else ())):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    (manifest_path,) = out.glob("sweeps/*/manifest.json")
    before = json.loads(manifest_path.read_text())
    done_before = {j["index"]: j["files"] for j in before["jobs"] if j["status"] == "done"}
    assert len(done_before) < 6, "the sweep finished before it was killed: nothing to resume"
    stamps = {f: os.stat(f).st_mtime_ns for files in done_before.values() for f in files}

    resumed = subprocess.run(command + ["--resume", str(manifest_path), "--json", "-q"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert sorted(summary["skipped"]) == sorted(done_before)  # nothing finished was redone
    assert sorted(j["index"] for j in summary["jobs"]) == sorted(set(range(6)) - set(done_before))
    assert all(j["status"] == "done" and len(j["files"]) == 1 for j in summary["jobs"])
    assert all(os.stat(f).st_mtime_ns == stamp for f, stamp in stamps.items())
    assert images_by_job(out) == Counter(range(6))  # every job's image, exactly once
    after = json.loads(manifest_path.read_text())
    assert [j["status"] for j in after["jobs"]] == ["done"] * 6
    assert all(Path(f).is_file() for j in after["jobs"] for f in j["files"])
    assert [Path(p).name for p in summary["grids"]] == ["grid.png"]
    assert Image.open(summary["grids"][0]).size[0] > 6 * 64


# --- failures, Ctrl-C, layering ---------------------------------------------------------------

PICKY_PACK = '''
from nodeflow.errors import NodeInputError
from nodeflow.spec import INT, Input, Int, Output, node


@node("PickyNumber", category="test", inputs=[Int("value", 1, min=0, max=10)], outputs=[Output(INT)])
def picky_number(value: int):
    """Refuses 3."""
    if value == 3:
        raise NodeInputError("value", "3 is unlucky")
    return (value,)


@node("Keep", category="test", output_node=True, inputs=[Input("value", INT)])
def keep(value: int):
    """An output node."""
    return {"value": value}
'''


@pytest.fixture
def picky(tmp_path):
    """A two-node workflow whose first node fails for the value 3, in a custom-nodes folder."""
    from nodeflow.engine.workflow import Link, NodeInstance, Workflow

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "picky.py").write_text(PICKY_PACK)
    workflow = Workflow({"1": NodeInstance("1", "PickyNumber", {"value": 1}), "2": NodeInstance("2", "Keep")},
                        [Link("1", 0, "2", "value")])
    save_workflow(workflow, tmp_path / "picky.json")
    return folder, tmp_path / "picky.json"


def test_a_failing_job_is_reported_and_the_others_run(picky, tmp_path, capsys):
    folder, path = picky
    code = cli.main(["run", str(path), "--custom-nodes", str(folder), "--output-dir", str(tmp_path / "out"),
                     "--device", "cpu", "--sweep", "1.value=1..4", "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 2  # the user can fix it: the usual rule
    summary = json.loads(captured.out)
    assert [j["status"] for j in summary["jobs"]] == ["done", "done", "failed", "done"]
    assert captured.err.strip().splitlines() == [
        "nodeflow: job 2 (1.value=3): node 1 (PickyNumber): input 'value': 3 is unlucky"]
    assert [j["executed"] for j in summary["jobs"]] == [["1", "2"], ["1", "2"], [], ["1", "2"]]
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert [j["status"] for j in manifest["jobs"]] == ["done", "done", "failed", "done"]
    assert "3 is unlucky" in manifest["jobs"][2]["error"] and summary["grids"] == []  # no images, no grid


def test_a_cancelled_sweep_keeps_what_finished_and_resumes_the_rest(picky, tmp_path):
    import threading

    folder, path = picky
    paths = Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", custom_nodes_dir=folder)
    registry = Registry.load(paths)
    workflow = load_workflow(path, registry)
    spec = parse_spec(["1.value=4..8"], workflow, registry)
    manifest = Manifest.create(tmp_path / "m" / "manifest.json", key=sweep_key(workflow, spec), workflow_name="w",
                               output_dir=paths.output_dir, spec=spec, plan=plan_jobs(spec, workflow, registry))
    cancel = threading.Event()
    finished = []

    def started(job, position, total):  # Ctrl-C as job 1 starts: it stops at its first safe point
        if job.index == 1:
            cancel.set()

    outcome = run_sweep(Executor(registry, paths), workflow, manifest, cancel_event=cancel,
                        on_job_started=started, on_job_finished=lambda result: finished.append(result.status))
    assert outcome.cancelled and finished == ["done", "cancelled"]
    assert [j["status"] for j in Manifest.load(manifest.path).jobs] == ["done", "cancelled", "pending", "pending",
                                                                        "pending"]
    resumed_manifest = Manifest.load(manifest.path)
    resumed_manifest.recover()
    resumed = run_sweep(Executor(registry, paths), workflow, resumed_manifest)
    assert not resumed.cancelled and resumed.skipped == [0]
    assert [r.index for r in resumed.results] == [1, 2, 3, 4]
    assert [j["status"] for j in Manifest.load(manifest.path).jobs] == ["done"] * 5


def test_the_sweeps_package_imports_neither_torch_nor_the_editor():
    code = ("import sys\nimport nodeflow.sweeps.run, nodeflow.sweeps.spec, nodeflow.sweeps.grid\n"
            "print(sorted(m for m in sys.modules if m in ('torch', 'dearpygui') or m.startswith('nodeflow.gui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
