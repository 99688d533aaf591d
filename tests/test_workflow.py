"""Our workflow format: round trip, determinism, atomic save, clear errors."""

import json

import pytest

from nodeflow.errors import WorkflowFormatError
from nodeflow.workflow import Link, NodeInstance, Workflow, dumps, load_workflow, save_workflow


def sample():
    return Workflow(
        nodes={"10": NodeInstance("10", "Number", {"value": 3}, title="ten"),
               "2": NodeInstance("2", "Sink", {"label": "x"}, mode="bypassed")},
        links=[Link("10", 0, "2", "value")],
        ui={"nodes": {"2": {"pos": [1, 2]}}},
    )


def test_round_trip_keeps_everything(tmp_path):
    path = tmp_path / "w.json"
    save_workflow(sample(), path)
    loaded = load_workflow(path)
    assert loaded == sample()


def test_save_is_deterministic_and_ordered():
    a = sample()
    b = Workflow(dict(reversed(list(a.nodes.items()))), list(a.links), a.ui)
    assert dumps(a) == dumps(b)
    assert list(json.loads(dumps(a))["nodes"]) == ["2", "10"]  # numeric order


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "w.json"
    path.write_text("old")
    save_workflow(sample(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]
    assert json.loads(path.read_text())["format"] == "nodeflow-workflow"


def test_unserialisable_value_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.json"
    path.write_text("old")
    broken = sample()
    broken.nodes["10"].inputs["value"] = object()
    with pytest.raises(TypeError):
        save_workflow(broken, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ('{"format": "nodeflow-workflow", "version": 99, "nodes": {}}', "newer"),
    ('{"format": "nodeflow-workflow", "version": 1, "nodes": {"1": {}}}', "node 1 has no type"),
    ('{"format": "nodeflow-workflow", "version": 1, "nodes": {}, "links": [{"from": ["1", 0], '
     '"to": ["2", "x"]}]}', "missing node"),
    ('[1, 2]', "not a workflow"),
])
def test_bad_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(WorkflowFormatError) as caught:
        load_workflow(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
