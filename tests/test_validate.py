"""Validation reports every problem at once, each naming node id, type and input; random
workflows and mutations give a valid workflow or problems, never another exception."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeflow.errors import NodeError, WorkflowFormatError
from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.spec import Choice, Output, node
from nodeflow.engine.validate import Problem, validate
from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from tests import stub_nodes


def chain():
    """Number(3) + Number(5) -> Scale -> Sink, valid."""
    return Workflow(
        nodes={"1": NodeInstance("1", "Number", {"value": 3}), "2": NodeInstance("2", "Number", {"value": 5}),
               "3": NodeInstance("3", "Add"), "4": NodeInstance("4", "Scale", {"factor": 2.0}),
               "5": NodeInstance("5", "Sink", {"label": "out"})},
        links=[Link("1", 0, "3", "a"), Link("2", 0, "3", "b"), Link("3", 0, "4", "x"),
               Link("4", 0, "5", "value")])


def lines(workflow, registry, paths=None):
    return [str(p) for p in validate(workflow, registry, paths)]


def test_a_valid_workflow_has_no_problems(stub_registry):
    assert validate(chain(), stub_registry) == []


def test_every_problem_is_reported_at_once_naming_node_type_and_input(stub_registry):
    workflow = chain()
    workflow.nodes["1"].inputs["value"] = 500          # out of range
    workflow.nodes["2"].inputs["value"] = "five"       # wrong JSON type
    workflow.nodes["4"].inputs["factr"] = 1.0          # unknown input
    workflow.nodes["6"] = NodeInstance("6", "Scal")    # unknown type, close to Scale
    workflow.links.remove(Link("2", 0, "3", "b"))      # required input not connected
    problems = validate(workflow, stub_registry)
    assert {(p.node_id, p.node_type, p.input) for p in problems} == {
        ("1", "Number", "value"), ("2", "Number", "value"), ("4", "Scale", "factr"),
        ("6", "Scal", None), ("3", "Add", "b")}
    text = "\n".join(map(str, problems))
    assert "node 1 (Number), input 'value': 500 is above the maximum 100" in text
    assert "node 2 (Number), input 'value': expected int, got str 'five'" in text
    assert "node 6 (Scal): unknown node type 'Scal'; did you mean Scale?" in text
    assert "node 3 (Add), input 'b': required input is not connected" in text


def test_link_problems(stub_registry):
    workflow = chain()
    workflow.links += [Link("1", 3, "4", "factor"),     # no such output
                       Link("1", 0, "5", "nothing"),    # no such input
                       Link("4", 0, "3", "a"),          # FLOAT into INT, and a second link
                       Link("99", 0, "5", "label")]     # a missing node
    text = "\n".join(lines(workflow, stub_registry))
    assert "node 4 (Scale), input 'factor': link from node 1: Number has no output 3" in text
    assert "node 5 (Sink), input 'nothing': link from node 1: Sink has no input 'nothing'" in text
    assert "node 3 (Add), input 'a': link from node 4: a FLOAT output cannot feed a INT input" in text
    assert "node 3 (Add), input 'a': has more than one link" in text
    assert "a link refers to a missing node '99'" in text


def test_cycles_name_their_nodes(stub_registry):
    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Add")
    workflow.links = [l for l in workflow.links if l.dst != "3"]
    workflow.links += [Link("1", 0, "3", "a"), Link("6", 0, "3", "b"), Link("3", 0, "6", "a"),
                       Link("2", 0, "6", "b")]
    [cycle] = [p for p in lines(workflow, stub_registry) if "cycle" in p]
    assert "3 -> 6 -> 3" in cycle or "6 -> 3 -> 6" in cycle


def test_no_output_node(stub_registry):
    workflow = chain()
    del workflow.nodes["5"]
    workflow.links.pop()
    assert lines(workflow, stub_registry) == [
        "the workflow has no output node (SaveImage, PreviewImage, ...)"]


def test_muted_nodes_are_skipped_and_bypass_routes_the_same_type(stub_registry):
    workflow = chain()
    workflow.nodes["7"] = NodeInstance("7", "NotInstalled", mode="muted")
    workflow.nodes["1"].inputs["value"] = 500
    workflow.nodes["1"].mode = "muted"  # its bad value does not matter, but Add loses input 'a'
    assert lines(workflow, stub_registry) == ["node 3 (Add), input 'a': required input is not connected"]
    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Steps", {"steps": 2}, mode="bypassed")
    workflow.links = [l for l in workflow.links if l.dst != "4"] + [
        Link("3", 0, "6", "x"), Link("6", 0, "4", "x")]  # Add -> (bypassed Steps) -> Scale
    assert validate(workflow, stub_registry) == []
    result = Executor(stub_registry).run(workflow)
    assert "6" not in result.executed and result.outputs["5"][0]["value"] == 16.0


@node("PickModel", output_node=True,
      inputs=[Choice("ckpt_name", lambda paths: paths.list_models("checkpoints"))], outputs=[])
def pick_model(ckpt_name):
    return None


def test_computed_choices_are_checked_against_the_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "a.safetensors").write_bytes(b"x")
    registry = Registry.from_modules(__import__(__name__, fromlist=["pick_model"]))
    paths = Paths(models_dirs=(tmp_path,), assets_dir=tmp_path / "none")
    workflow = Workflow({"1": NodeInstance("1", "PickModel", {"ckpt_name": "b.safetensors"})}, [])
    assert lines(workflow, registry, paths) == [
        "node 1 (PickModel), input 'ckpt_name': 'b.safetensors' is not one of: 'a.safetensors'"]
    workflow.nodes["1"].inputs["ckpt_name"] = "a.safetensors"
    assert validate(workflow, registry, paths) == []
    assert "required value is missing" in lines(Workflow({"1": NodeInstance("1", "PickModel")}, []),
                                                registry, paths)[0]


def test_problem_reads_as_its_line():
    problem = Problem("bad", "3", "KSampler", "cfg")
    assert str(problem) == "node 3 (KSampler), input 'cfg': bad" and "bad" in problem


# --- property-based: any JSON, any mutation -> a workflow or problems, never another exception

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
REGISTRY = Registry.from_modules(stub_nodes)
SAFE_TYPES = ["Number", "Add", "Scale", "Sink", "Steps", "Nope"]
NODE_IDS = st.sampled_from(["1", "2", "3", "4", "5", "6"])
INPUTS = st.sampled_from(["value", "a", "b", "x", "factor", "label", "flag", "steps", "zzz"])


@st.composite
def mutated(draw):
    data = chain().to_dict()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 6))
        if not isinstance(data.get("nodes"), dict) or not isinstance(data.get("links"), list):
            break  # a top-level field was replaced by random JSON
        node_id = draw(NODE_IDS)
        entry = data["nodes"].get(node_id)
        if kind == 0 and entry is not None:
            entry["inputs"][draw(INPUTS)] = draw(JSON)
        elif kind == 1:
            data["nodes"].pop(node_id, None)
        elif kind == 2:
            data["nodes"][node_id] = {"type": draw(st.sampled_from(SAFE_TYPES)), "inputs": {}}
        elif kind == 3:
            data["links"].append({"from": [draw(NODE_IDS), draw(st.integers(-1, 2))],
                                  "to": [draw(NODE_IDS), draw(INPUTS)]})
        elif kind == 4 and entry is not None:
            entry["mode"] = draw(st.sampled_from(["normal", "muted", "bypassed", "weird"]))
        elif kind == 5 and data["links"]:
            data["links"].pop(draw(st.integers(0, len(data["links"]) - 1)))
        elif kind == 6:
            data[draw(st.sampled_from(["nodes", "links", "ui", "version"]))] = draw(JSON)
    return data


def check_never_crashes(data):
    try:
        workflow = Workflow.from_dict(copy.deepcopy(data))
    except WorkflowFormatError:
        return
    problems = validate(workflow, REGISTRY)
    assert all(isinstance(p, Problem) and str(p) for p in problems)
    if not problems:
        stub_nodes.CALLS.clear()
        try:
            Executor(REGISTRY).run(workflow)
        except NodeError:
            pass  # a node refusing its input at run time is a clean, named error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_workflows_give_a_workflow_or_problems(data):
    check_never_crashes(data)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_random_json_gives_a_workflow_or_a_format_error(data):
    check_never_crashes(data)
    check_never_crashes({"format": "nodeflow-workflow", "version": 1, "nodes": data})
    check_never_crashes({"format": "nodeflow-workflow", "version": 1, "nodes": {"1": data}})
    json.dumps(chain().to_dict())  # the base stays serialisable
