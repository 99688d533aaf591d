"""The workflow as a NetworkX DAG: muted and bypassed nodes resolved, the order to run in.

- A muted node is left out; its links are dropped (a consumer that needed it is then missing a
  required input, which validation reports).
- A bypassed node is left out and each of its outputs is replaced by its first input link of the
  same type (ComfyUI's semantics); an output with no such input is dropped like a muted one.
- Only output nodes and their ancestors run.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import networkx as nx

from nodeflow.errors import UnknownNodeType
from nodeflow.engine.workflow import Link, Workflow, node_id_order


@dataclass(frozen=True)
class Plan:
    """What to run: node ids in topological order and the links between them."""

    order: tuple[str, ...]
    links: tuple[Link, ...]
    output_nodes: tuple[str, ...]
    inputs: dict[str, dict[str, Link]] = field(default_factory=dict, compare=False)

    def input_links(self, node_id: str) -> dict[str, Link]:
        """The links feeding ``node_id``, by input name."""
        return self.inputs.get(node_id, {})


def active_links(workflow: Workflow, registry) -> list[Link]:
    """Links after muted nodes are removed and bypassed ones are routed through."""
    links = []
    into: dict[str, list[Link]] = {}
    for link in workflow.links:
        into.setdefault(link.dst, []).append(link)
    for link in workflow.links:
        target = workflow.nodes.get(link.dst)
        if target is None or target.mode != "normal":
            continue
        source = _follow_bypass(workflow, registry, link, into)
        if source is not None:
            links.append(Link(source.src, source.src_output, link.dst, link.dst_input))
    return links


def _follow_bypass(workflow: Workflow, registry, link: Link, into: dict[str, list[Link]]) -> Link | None:
    """The link that feeds ``link`` once bypassed nodes are passed through (a bypassed node hands
    on its first input of the output's type that leads somewhere), or None when it leads to a
    muted or missing node. A depth-first search with an explicit stack: chains of any length."""
    stack, seen = [link], set()
    while stack:
        current = stack.pop()
        src = workflow.nodes.get(current.src)
        if src is None or src.mode == "muted":
            continue
        if src.mode == "normal":
            return current
        if current.src in seen:
            continue
        seen.add(current.src)
        spec = registry.specs.get(src.type)
        if spec is None or current.src_output >= len(spec.outputs):
            continue
        wanted = spec.outputs[current.src_output].type
        candidates = [upstream for upstream in sorted(into.get(current.src, ()), key=_input_position(spec))
                      if (s := spec.input(upstream.dst_input)) is not None and s.type == wanted]
        stack.extend(reversed(candidates))  # the first input is tried first
    return None


def _input_position(spec):
    names = [s.name for s in spec.inputs]
    return lambda link: names.index(link.dst_input) if link.dst_input in names else len(names)


def build_graph(workflow: Workflow, links: list[Link]) -> nx.DiGraph:
    """Normal nodes and the links between them (two links between one pair make one edge)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(node_id for node_id, node in workflow.nodes.items() if node.mode == "normal")
    graph.add_edges_from((link.src, link.dst) for link in links)
    return graph


def find_cycle(graph: nx.DiGraph) -> list[str] | None:
    """The nodes of one cycle, in link order, or None for a DAG."""
    if nx.is_directed_acyclic_graph(graph):  # fast path: find_cycle searches from every node
        return None
    try:
        return [edge[0] for edge in nx.find_cycle(graph)]
    except nx.NetworkXNoCycle:
        return None


def plan(workflow: Workflow, registry, links: list[Link] | None = None,
         graph: nx.DiGraph | None = None) -> Plan:
    """The nodes to run (output nodes and their ancestors) in a deterministic topological order.
    ``links`` and ``graph``: from ``active_links`` and ``build_graph`` when already made."""
    links = active_links(workflow, registry) if links is None else links
    graph = build_graph(workflow, links) if graph is None else graph
    outputs = []
    for node_id in sorted(graph.nodes, key=node_id_order):
        node_type = workflow.nodes[node_id].type
        if node_type not in registry:
            raise UnknownNodeType(node_type, node_id)
        if registry.get(node_type).output_node:
            outputs.append(node_id)
    needed = set(outputs)
    for node_id in outputs:
        needed |= nx.ancestors(graph, node_id)
    kept = tuple(link for link in links if link.src in needed and link.dst in needed)
    order = _topological_order(needed, kept)
    inputs: dict[str, dict[str, Link]] = {}
    for link in kept:
        inputs.setdefault(link.dst, {})[link.dst_input] = link
    return Plan(order, kept, tuple(outputs), inputs)


def _topological_order(node_ids: set[str], links: tuple[Link, ...]) -> tuple[str, ...]:
    """Kahn's algorithm, always taking the smallest ready id (numeric ids in numeric order), so
    the order is deterministic. ``links`` must form a DAG (validation checked)."""
    waiting = dict.fromkeys(node_ids, 0)
    children: dict[str, list[str]] = {}
    for link in links:
        waiting[link.dst] += 1
        children.setdefault(link.src, []).append(link.dst)
    ready = [(node_id_order(node_id), node_id) for node_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(node_id)
        for child in children.get(node_id, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (node_id_order(child), child))
    if len(order) != len(node_ids):
        raise ValueError("the links form a cycle")  # unreachable after validation
    return tuple(order)



