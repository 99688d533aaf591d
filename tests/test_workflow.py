"""Our workflow format: round trip, determinism, atomic save, clear errors."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeflow.errors import WorkflowFormatError
from nodeflow.engine.workflow import Link, NodeInstance, Workflow, dumps, save_workflow
from nodeflow.formats import load_workflow, parse_workflow_data


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
    ('{"format": "nodeflow-workflow", "version": 1, "nodes": {}, "links": [{"from": ["1"], '
     '"to": ["2", "x"]}]}', "malformed link"),
    ('[1, 2]', "not a workflow"),
])
def test_bad_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(WorkflowFormatError) as caught:
        load_workflow(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_comfy_api_json_is_sniffed_and_mapped_onto_the_same_ids(tmp_path, stub_registry):
    path = tmp_path / "api.json"
    path.write_text(json.dumps({
        "7": {"class_type": "Number", "inputs": {"value": 3}, "_meta": {"title": "three"}},
        "9": {"class_type": "Sink", "inputs": {"value": ["7", 0], "label": "x"}}}))
    workflow = load_workflow(path, stub_registry)
    assert {k: v.type for k, v in workflow.nodes.items()} == {"7": "Number", "9": "Sink"}
    assert workflow.links == [Link("7", 0, "9", "value")]
    assert workflow.nodes["7"].inputs["value"] == 3


@given(st.dictionaries(st.sampled_from(["1", "2"]), st.fixed_dictionaries(
    {"class_type": st.sampled_from(["Number", "Sink", 3])},
    optional={"inputs": st.one_of(st.none(), st.integers(), st.dictionaries(
        st.sampled_from(["value", "label"]), st.one_of(st.integers(), st.text(max_size=3),
                                                       st.lists(st.integers(-1, 3) | st.text(max_size=2),
                                                                max_size=3))))}),
    min_size=1))
@settings(max_examples=100, deadline=None)
def test_malformed_comfy_json_is_a_format_error_or_a_workflow(data):
    from nodeflow.engine.registry import Registry
    from nodeflow.engine.validate import validate
    from tests import stub_nodes

    registry = Registry.from_modules(stub_nodes)
    try:
        workflow = parse_workflow_data(data, registry, "w.json")
    except WorkflowFormatError as error:
        assert "w.json" in str(error) or "ComfyUI" in str(error)
        return
    validate(workflow, registry)


def test_png_with_a_workflow_is_read(tmp_path, stub_registry):
    from PIL import Image

    from nodeflow.formats.png import workflow_text_chunks
    from nodeflow.image.files import save_png_with_metadata

    path = tmp_path / "image.png"
    save_png_with_metadata(Image.new("RGB", (4, 4)), path, workflow_text_chunks(sample(), stub_registry))
    loaded = load_workflow(path, stub_registry)
    assert {k: v.type for k, v in loaded.nodes.items()} == {"10": "Number", "2": "Sink"}


def test_saved_workflow_has_the_usual_permissions_and_keeps_an_existing_files_mode(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "new.json"
        save_workflow(sample(), path)
        assert path.stat().st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)
        save_workflow(sample(), path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old_umask)
