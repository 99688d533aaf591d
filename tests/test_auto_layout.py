"""Positions for workflows that place no nodes (ComfyUI API exports): columns by depth, no overlaps."""

from __future__ import annotations

from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from nodeflow.formats.auto_layout import COLUMN_WIDTH, default_positions, depths, estimated_heights


def chain_with_branches() -> Workflow:
    workflow = Workflow()
    for node_id, inputs in {"1": {}, "2": {"text": "a"}, "3": {"text": "b"}, "4": {"a": 1, "b": 2, "c": 3},
                            "5": {}, "6": {}}.items():
        workflow.nodes[node_id] = NodeInstance(node_id, "T", dict(inputs))
    workflow.links += [Link("1", 0, "2", "clip"), Link("1", 0, "3", "clip"), Link("2", 0, "4", "positive"),
                       Link("3", 0, "4", "negative"), Link("1", 0, "4", "model"), Link("4", 0, "5", "samples")]
    return workflow


def test_columns_follow_the_longest_chain_and_stacked_nodes_never_overlap():
    workflow = chain_with_branches()
    assert depths(workflow) == {"1": 0, "2": 1, "3": 1, "4": 2, "5": 3, "6": 0}
    positions, heights = default_positions(workflow), estimated_heights(workflow)
    assert heights["4"] > heights["1"]  # more inputs, taller
    assert positions["4"][0] == positions["1"][0] + 2 * COLUMN_WIDTH
    for a in positions:
        for b in positions:
            if a < b and positions[a][0] == positions[b][0]:
                top, bottom = sorted((a, b), key=lambda n: positions[n][1])
                assert positions[top][1] + heights[top] < positions[bottom][1]


def test_placed_nodes_keep_their_positions_and_cycles_do_not_hang():
    workflow = chain_with_branches()
    workflow.ui["nodes"] = {"1": {"pos": [7.0, 9.0]}}
    assert "1" not in default_positions(workflow) and set(default_positions(workflow)) == {"2", "3", "4", "5", "6"}
    workflow.ui["nodes"] = {node_id: {"pos": [0.0, 0.0]} for node_id in workflow.nodes}
    assert default_positions(workflow) == {}
    workflow.links.append(Link("5", 0, "1", "loop"))
    assert set(depths(workflow)) == set(workflow.nodes)
