"""The executor: order, caching by content signature, errors naming nodes, cancellation."""

import threading

import pytest

from nodeflow.engine.cache import OutputCache
from nodeflow.errors import Cancelled, NodeError, ValidationError
from nodeflow.engine.executor import Executor
from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from tests.stub_nodes import CALLS


def chain(value=3, factor=2.0, label="out"):
    """Number(value) + Number(5) -> Scale(factor) -> Sink."""
    return Workflow(
        nodes={
            "1": NodeInstance("1", "Number", {"value": value}),
            "2": NodeInstance("2", "Number", {"value": 5}),
            "3": NodeInstance("3", "Add"),
            "4": NodeInstance("4", "Scale", {"factor": factor}),
            "5": NodeInstance("5", "Sink", {"label": label}),
        },
        links=[Link("1", 0, "3", "a"), Link("2", 0, "3", "b"), Link("3", 0, "4", "x"),
               Link("4", 0, "5", "value")],
    )


def test_runs_in_order_and_returns_output_node_values(stub_registry):
    result = Executor(stub_registry).run(chain())
    assert result.outputs["5"] == ({"value": 16.0, "label": "out"},)  # (3 + 5) * 2
    assert CALLS["Sink"] == 1 and CALLS["Add"] == 1
    assert result.executed == ["1", "2", "3", "4", "5"]


def test_values_flow_along_links(stub_registry):
    result = Executor(stub_registry).run(chain(value=4, factor=0.5, label="x"))
    assert result.outputs["5"] == ({"value": 4.5, "label": "x"},)  # (4 + 5) * 0.5


def test_events_report_each_node_once_in_order(stub_registry):
    events = []
    Executor(stub_registry).run(chain(), on_event=events.append)
    finished = [e.node_id for e in events if type(e).__name__ == "NodeFinished"]
    assert finished == ["1", "2", "3", "4", "5"]
    assert type(events[-1]).__name__ == "RunFinished"


def test_changing_a_downstream_literal_reruns_only_downstream(stub_registry):
    executor = Executor(stub_registry)
    executor.run(chain(factor=2.0))
    CALLS.clear()
    result = executor.run(chain(factor=3.0))
    assert result.cached == ["1", "2", "3"]
    assert result.executed == ["4", "5"]
    assert CALLS["Number"] == 0 and CALLS["Add"] == 0 and CALLS["Scale"] == 1


def test_a_to_b_to_a_hits_the_cache(stub_registry):
    executor = Executor(stub_registry)
    executor.run(chain(factor=2.0))
    executor.run(chain(factor=3.0))
    CALLS.clear()
    result = executor.run(chain(factor=2.0))
    assert CALLS["Scale"] == 0
    assert "4" in result.cached


def test_signatures_do_not_depend_on_node_ids(stub_registry):
    executor = Executor(stub_registry)
    executor.run(chain())
    renamed = chain()
    renamed.nodes = {f"n{k}": NodeInstance(f"n{k}", v.type, v.inputs) for k, v in renamed.nodes.items()}
    renamed.links = [Link(f"n{l.src}", l.src_output, f"n{l.dst}", l.dst_input) for l in renamed.links]
    CALLS.clear()
    result = executor.run(renamed)
    assert CALLS["Add"] == 0 and CALLS["Scale"] == 0
    assert result.executed == []  # like ComfyUI, an unchanged output node is not re-run
    assert sorted(result.cached) == ["n1", "n2", "n3", "n4", "n5"]


def test_only_ancestors_of_output_nodes_run(stub_registry):
    workflow = chain()
    workflow.nodes["9"] = NodeInstance("9", "Number", {"value": 7})  # not connected to an output
    result = Executor(stub_registry).run(workflow)
    assert "9" not in result.executed


def test_non_idempotent_nodes_always_rerun(stub_registry):
    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Random")
    workflow.nodes["7"] = NodeInstance("7", "Sink", {"label": "r"})
    workflow.links += [Link("3", 0, "6", "x"), Link("6", 0, "7", "value")]
    executor = Executor(stub_registry)
    first = executor.run(workflow).outputs["7"][0]["value"]
    second = executor.run(workflow).outputs["7"][0]["value"]
    assert CALLS["Random"] == 2 and first != second


def test_user_error_names_node_and_input(stub_registry):
    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Fail")
    workflow.nodes["7"] = NodeInstance("7", "Sink")
    workflow.links += [Link("3", 0, "6", "x"), Link("6", 0, "7", "value")]
    with pytest.raises(NodeError) as caught:
        Executor(stub_registry).run(workflow)
    assert "node 6 (Fail)" in str(caught.value) and "'x'" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.input_name == "x"


def test_unexpected_exception_names_node_and_keeps_cause(stub_registry):
    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Crash")
    workflow.nodes["7"] = NodeInstance("7", "Sink")
    workflow.links += [Link("3", 0, "6", "x"), Link("6", 0, "7", "value")]
    with pytest.raises(NodeError) as caught:
        Executor(stub_registry).run(workflow)
    assert "node 6 (Crash)" in str(caught.value) and "ZeroDivisionError" in str(caught.value)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_invalid_workflow_is_refused_before_running(stub_registry):
    workflow = chain(factor=50.0)  # above the maximum 10
    with pytest.raises(ValidationError) as caught:
        Executor(stub_registry).run(workflow)
    assert "node 4 (Scale), input 'factor'" in str(caught.value)
    assert CALLS["Number"] == 0


def test_cancel_stops_before_the_next_node(stub_registry):
    cancel = threading.Event()
    seen = []

    def on_event(event):
        seen.append(event)
        if type(event).__name__ == "NodeFinished" and event.node_id == "2":
            cancel.set()

    with pytest.raises(Cancelled):
        Executor(stub_registry).run(chain(), on_event=on_event, cancel_event=cancel)
    assert CALLS["Add"] == 0


def test_muted_and_bypassed_nodes(stub_registry):
    bypassed = chain(factor=3.0)
    bypassed.nodes["4"].mode = "bypassed"  # Scale's INT input does not match its FLOAT output
    assert "required input is not connected" in str(
        pytest.raises(ValidationError, Executor(stub_registry).run, bypassed).value)
    muted = chain()
    muted.nodes["5"].mode = "muted"
    muted.nodes["6"] = NodeInstance("6", "Sink", {"label": "other"})
    muted.links.append(Link("3", 0, "6", "value"))
    result = Executor(stub_registry).run(muted)
    assert "5" not in result.executed and "4" not in result.executed
    assert result.outputs["6"] == ({"value": 8, "label": "other"},)


def test_events_and_timings_describe_the_run(stub_registry):
    seen = []
    result = Executor(stub_registry).run(chain(), on_event=seen.append)
    assert type(seen[0]).__name__ == "RunStarted" and seen[0].node_ids == ("1", "2", "3", "4", "5")
    assert set(result.node_seconds) == set(result.executed)
    assert all(seconds >= 0 for seconds in result.node_seconds.values())
    progress = [e for e in seen if type(e).__name__ == "Progress"]
    assert [(e.node_id, e.step, e.total) for e in progress] == [("5", 1, 1)]


def test_cache_hits_are_reported_as_events(stub_registry):
    executor = Executor(stub_registry)
    executor.run(chain())
    seen = []
    executor.run(chain(label="other"), on_event=seen.append)
    cached = [e.node_id for e in seen if type(e).__name__ == "NodeCached"]
    started = [e.node_id for e in seen if type(e).__name__ == "NodeStarted"]
    assert cached == ["1", "2", "3", "4"] and started == ["5"]


def test_fingerprint_change_reruns_the_file_reader(stub_registry, tmp_path):
    number_file = tmp_path / "n.txt"
    number_file.write_text("4")
    workflow = Workflow(nodes={"1": NodeInstance("1", "ReadNumber", {"path": str(number_file)}),
                               "2": NodeInstance("2", "Sink", {"label": "n"})},
                        links=[Link("1", 0, "2", "value")])
    executor = Executor(stub_registry)
    assert executor.run(workflow).outputs["2"][0]["value"] == 4
    executor.run(workflow)
    assert CALLS["ReadNumber"] == 1  # same content: cached
    number_file.write_text("9")
    assert executor.run(workflow).outputs["2"][0]["value"] == 9
    assert CALLS["ReadNumber"] == 2


def test_cache_is_bounded_by_bytes_across_runs(stub_registry):
    def zeros(count):
        return Workflow(nodes={"1": NodeInstance("1", "Zeros", {"count": count}),
                               "2": NodeInstance("2", "TensorSum"),
                               "3": NodeInstance("3", "Sink", {"label": "z"})},
                        links=[Link("1", 0, "2", "tensor"), Link("2", 0, "3", "value")])

    executor = Executor(stub_registry, cache=OutputCache({"cpu": 6000}))
    executor.run(zeros(1000))  # 4000 bytes
    executor.run(zeros(1000))
    assert CALLS["Zeros"] == 1
    executor.run(zeros(750))  # 3000 more bytes: over the budget, the oldest tensor goes
    assert 3000 <= executor.cache.bytes_used()["cpu"] <= 6000
    executor.run(zeros(1000))
    assert CALLS["Zeros"] == 3  # the first tensor was evicted (LRU) to make room
    executor.clear_cache()
    assert len(executor.cache) == 0


def test_cancel_inside_a_long_node_stops_at_the_next_step(stub_registry):
    cancel = threading.Event()

    def on_event(event):
        if type(event).__name__ == "Progress" and event.step == 3:
            cancel.set()

    workflow = chain()
    workflow.nodes["6"] = NodeInstance("6", "Steps", {"steps": 100})
    workflow.nodes["7"] = NodeInstance("7", "Sink")
    workflow.links += [Link("3", 0, "6", "x"), Link("6", 0, "7", "value")]
    with pytest.raises(Cancelled):
        Executor(stub_registry).run(workflow, on_event=on_event, cancel_event=cancel)
    assert CALLS["Steps"] == 3


def test_intermediates_are_released_when_no_longer_needed(stub_registry):
    import gc

    from tests.stub_nodes import MADE

    MADE.clear()
    alive_when_sink_starts = []

    def on_event(event):
        if type(event).__name__ == "NodeStarted" and event.node_id == "4":
            gc.collect()
            alive_when_sink_starts.append(MADE[0]() is not None)

    workflow = Workflow(nodes={"1": NodeInstance("1", "Zeros", {"count": 1000}),
                               "2": NodeInstance("2", "TensorSum"),
                               "3": NodeInstance("3", "Steps", {"steps": 1}),
                               "4": NodeInstance("4", "Sink")},
                        links=[Link("1", 0, "2", "tensor"), Link("2", 0, "3", "x"),
                               Link("3", 0, "4", "value")])
    executor = Executor(stub_registry, cache=OutputCache({"cpu": 0}))  # the cache keeps nothing
    executor.run(workflow, on_event=on_event)
    assert alive_when_sink_starts == [False]
