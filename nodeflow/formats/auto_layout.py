"""Positions for nodes a workflow file does not place (ComfyUI API exports, hand-written files):
columns by depth (the longest chain of links from a source node), stacked in each column by id,
each node's height estimated from its number of inputs so that stacked nodes do not overlap."""

from __future__ import annotations

from collections import Counter

from nodeflow.engine.workflow import Workflow, node_id_order

COLUMN_WIDTH = 420.0
ROW_GAP = 40.0
MARGIN = 50.0
TITLE_HEIGHT = 60.0
ROW_HEIGHT = 24.0  # one input or output line


def depths(workflow: Workflow) -> dict[str, int]:
    """Each node's depth: 0 for nodes without incoming links, else 1 + its deepest parent's
    (links that close a cycle are ignored)."""
    parents: dict[str, list[str]] = {node_id: [] for node_id in workflow.nodes}
    for link in workflow.links:
        if link.dst in parents and link.src in workflow.nodes:
            parents[link.dst].append(link.src)
    depth: dict[str, int] = {}
    for start in workflow.nodes:
        stack, visiting = [(start, iter(parents[start]))], {start}
        while stack:
            node, pending = stack[-1]
            parent = next((p for p in pending if p not in depth and p not in visiting), None)
            if parent is not None:
                visiting.add(parent)
                stack.append((parent, iter(parents[parent])))
                continue
            depth[node] = 1 + max((depth[p] for p in parents[node] if p in depth), default=-1)
            visiting.discard(node)
            stack.pop()
    return depth


def estimated_heights(workflow: Workflow) -> dict[str, float]:
    """Each node's height on the canvas, from its literal and linked inputs (plus an output line)."""
    linked = Counter(link.dst for link in workflow.links)
    return {node_id: TITLE_HEIGHT + ROW_HEIGHT * (len(node.inputs) + linked[node_id] + 1)
            for node_id, node in workflow.nodes.items()}


def default_positions(workflow: Workflow, only_missing: bool = True) -> dict[str, list[float]]:
    """[x, y] for every node without a position in ``workflow.ui`` (or every node); nothing is
    computed when every node has one."""
    placed = workflow.ui.get("nodes", {})
    if only_missing and all((placed.get(k) or {}).get("pos") for k in workflow.nodes):
        return {}
    depth, heights = depths(workflow), estimated_heights(workflow)
    columns: dict[int, list[str]] = {}
    for node_id in sorted(workflow.nodes, key=node_id_order):
        columns.setdefault(depth[node_id], []).append(node_id)
    positions = {}
    for column, members in columns.items():
        y = MARGIN
        for node_id in members:
            positions[node_id] = [MARGIN + COLUMN_WIDTH * column, y]
            y += heights[node_id] + ROW_GAP
    if only_missing:
        return {k: v for k, v in positions.items() if not (placed.get(k) or {}).get("pos")}
    return positions
