"""The command line: light start, exit codes, clear one-line errors, --set, --json, nodes."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nodeflow import cli
from nodeflow.errors import Cancelled
from nodeflow.engine.workflow import Link, NodeInstance, Workflow, save_workflow

ROOT = Path(__file__).resolve().parent.parent


def test_import_and_help_do_not_import_torch_or_dearpygui():
    code = ("import sys, nodeflow, nodeflow.cli\n"
            "for argv in (['--help'], ['run', '--help'], ['nodes', '--help']):\n"
            "    try:\n        nodeflow.cli.main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'dearpygui', 'numpy', 'networkx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr


@pytest.fixture
def stub_folder(tmp_path, monkeypatch):
    """The stub pack as a user's custom-nodes folder; only it (no built-ins) is loaded."""
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "stubs.py").write_text((Path(__file__).parent / "stub_nodes.py").read_text())
    from nodeflow.engine.registry import Registry

    real_load = Registry.load
    monkeypatch.setattr(Registry, "load", classmethod(
        lambda cls, paths=None, **kw: real_load.__func__(cls, paths, builtins=False, entry_point_packs=False)))
    monkeypatch.chdir(tmp_path)
    return folder


def write(tmp_path, workflow, name="w.json"):
    path = tmp_path / name
    save_workflow(workflow, path)
    return str(path)


def sample(value=3):
    return Workflow({"1": NodeInstance("1", "Number", {"value": value}),
                     "2": NodeInstance("2", "Sink", {"label": "x", "flag": False})},
                    [Link("1", 0, "2", "value")])


def test_run_prints_a_json_summary(stub_folder, tmp_path, capsys):
    code = cli.main(["run", write(tmp_path, sample()), "--custom-nodes", str(stub_folder), "--json",
                     "--device", "cpu", "--set", "1.value=7", "--set", "2.label=42", "--set", "2.flag=yes"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["executed"] == ["1", "2"] and summary["cached"] == [] and summary["files"] == []
    assert set(summary["node_seconds"]) == {"1", "2"}
    assert "[1/2] Number (node 1)" in out.err and "[####" in out.err  # progress on stderr


@pytest.mark.parametrize("override, message", [
    ("1.value=seven", "'seven' is not an integer"),
    ("1.valu=3", "node 1 (Number) has no input 'valu'; its values: value"),
    ("7.value=1", "no node '7'"),
    ("value=1", "expected NODE.INPUT=VALUE"),
    ("1.value=500", "node 1 (Number), input 'value': 500 is above the maximum 100"),
])
def test_user_mistakes_are_one_line_and_exit_2(stub_folder, tmp_path, capsys, override, message):
    code = cli.main(["run", write(tmp_path, sample()), "--custom-nodes", str(stub_folder),
                     "--device", "cpu", "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("node_type, code, message", [
    ("Fail", 2, "node 3 (Fail): input 'x': 3 is not acceptable"),  # the user can fix it, found while running
    ("Crash", 1, "node 3 (Crash): ZeroDivisionError"),  # an unexpected exception in a node: a bug
])
def test_a_failing_node_names_itself_and_exits_by_the_rule(stub_folder, tmp_path, capsys, node_type, code, message):
    workflow = sample()
    workflow.nodes["3"] = NodeInstance("3", node_type)
    workflow.links = [Link("1", 0, "3", "x"), Link("3", 0, "2", "value")]
    exit_code = cli.main(["run", write(tmp_path, workflow), "--custom-nodes", str(stub_folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_code == code and message in err
    assert ("Traceback" not in err) or node_type == "Crash"


def test_validate_and_malformed_json(stub_folder, tmp_path, capsys):
    assert cli.main(["validate", write(tmp_path, sample()), "--custom-nodes", str(stub_folder)]) == 0
    assert ": ok" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "nodeflow-workflow",\n "nodes": {,}}')
    assert cli.main(["validate", str(broken), "--custom-nodes", str(stub_folder)]) == 2
    assert "not valid JSON" in (err := capsys.readouterr().err) and "line 2 column 12" in err
    unknown = sample()
    unknown.nodes["1"].type = "Numbr"
    assert cli.main(["validate", write(tmp_path, unknown), "--custom-nodes", str(stub_folder)]) == 2
    assert "node 1 (Numbr): unknown node type 'Numbr'; did you mean Number" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_nodes_lists_every_type_with_inputs(stub_folder, capsys):
    assert cli.main(["nodes", "--json", "--custom-nodes", str(stub_folder)]) == 0
    listing = {entry["id"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert {"Number", "Add", "Sink"} <= set(listing)
    assert listing["Number"]["inputs"] == [{"name": "value", "type": "INT", "optional": False, "default": 1,
                                            "min": 0, "max": 100, "step": 1}]
    assert listing["Scale"]["outputs"] == [{"name": "scaled", "type": "FLOAT"}]
    assert cli.main(["nodes", "--custom-nodes", str(stub_folder)]) == 0
    assert "Number" in capsys.readouterr().out


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as caught:
        cli.main(["run"])
    assert caught.value.code == 2


def default_sigint() -> None:
    """In the child: SIGINT back to its default. A test run started in the background (``&``,
    nohup) ignores SIGINT, children inherit that, and Python then never sees a Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("moment", ["loading", "sampling"])
def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path, moment):
    """A real SIGINT to a real `nodeflow run`: the run stops at the next safe point, exit 130, no
    traceback, files already written stay."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.factories import write_tiny_checkpoint
    from tests.project import ROOT

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    command = [sys.executable, "-m", "nodeflow", "run", str(ROOT / "workflows" / "txt2img.json"),
               "--models-dir", str(tmp_path / "models"), "--output-dir", str(tmp_path / "out"),
               "--set", "4.ckpt_name=tiny.safetensors", "--set", "3.steps=10000", "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=default_sigint)
    wanted = "[1/" if moment == "loading" else "/10000"
    seen, started = "", time.monotonic()
    while wanted not in seen and time.monotonic() - started < 60:
        seen += process.stderr.read(1)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[1]
    output = seen + rest
    assert process.returncode == 130, output[-2000:]
    assert "Traceback" not in output and "cancelled" in output


def test_a_second_ctrl_c_during_sampling_exits_130_at_once(tmp_path):
    """Two SIGINTs while sampling: exit 130, no SIGABRT ("terminate called without an active
    exception", exit 134, was seen in 3 of 4 trials), no traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.factories import write_tiny_checkpoint
    from tests.project import ROOT

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    command = [sys.executable, "-m", "nodeflow", "run", str(ROOT / "workflows" / "txt2img.json"),
               "--models-dir", str(tmp_path / "models"), "--output-dir", str(tmp_path / "out"),
               "--set", "4.ckpt_name=tiny.safetensors", "--set", "3.steps=10000", "--device", "cpu"]
    for trial in range(3):
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                   env={**os.environ, "OMP_NUM_THREADS": "2"}, preexec_fn=default_sigint)
        seen, started = "", time.monotonic()
        while "/10000" not in seen and time.monotonic() - started < 60:
            seen += process.stderr.read(1)
        process.send_signal(signal.SIGINT)
        while "Ctrl-C again" not in seen and time.monotonic() - started < 60:
            seen += process.stderr.read(1)
        process.send_signal(signal.SIGINT)
        output = seen + process.communicate(timeout=60)[1]
        assert process.returncode == 130, (trial, output[-2000:])
        assert "Traceback" not in output and "terminate called" not in output


@pytest.mark.parametrize("raw, kind, value", [("42", "INT", 42), ("0x10", "INT", 16), ("007", "INT", 7),
                                              ("2.5", "FLOAT", 2.5), ("off", "BOOLEAN", False),
                                              ("123", "STRING", "123"), ("[1, 2]", None, [1, 2]),
                                              ("text", None, "text")])
def test_values_are_parsed_by_the_input_type(raw, kind, value):
    assert cli.parse_value(raw, kind) == value


def test_an_unwritable_output_folder_is_one_line_without_traceback(tmp_path, capsys):
    from tests.project import ROOT

    blocker = tmp_path / "output-is-a-file"
    blocker.write_text("")
    code = cli.main(["run", str(ROOT / "workflows" / "shapes_no_model.json"), "--output-dir", str(blocker), "-q"])
    errors = capsys.readouterr().err
    assert code == 2  # the user can fix it: the rule for exit 2
    assert "SaveImage" in errors and str(blocker) in errors and "Traceback" not in errors
    assert len(errors.strip().splitlines()) == 1
