"""The command line: light start, clear errors, running a workflow end to end."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nodeflow.cli", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300)


def test_import_and_help_do_not_import_torch_or_dearpygui():
    code = ("import sys, nodeflow, nodeflow.cli\n"
            "try:\n    nodeflow.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'dearpygui') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr


def test_missing_file_is_one_line_without_traceback(tmp_path):
    out = run_cli("run", str(tmp_path / "nope.json"))
    assert out.returncode == 2
    assert "nope.json" in out.stderr and "Traceback" not in out.stderr


def test_bad_override_is_explained(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"format": "nodeflow-workflow", "version": 1, "nodes": {}, "links": []}))
    out = run_cli("run", str(path), "--set", "7.seed=1")
    assert out.returncode == 2 and "no node '7'" in out.stderr


def test_validate_reports_problems(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"format": "nodeflow-workflow", "version": 1,
                                "nodes": {"1": {"type": "NoSuchNode"}}, "links": []}))
    out = run_cli("validate", str(path))
    assert out.returncode == 2
    assert "node 1 (NoSuchNode): unknown node type 'NoSuchNode'" in out.stderr
