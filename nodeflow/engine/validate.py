"""Check a workflow before anything runs: every problem at once, each naming its node and input.

``validate`` returns a list of ``Problem`` records (empty: the workflow can run). Each prints as
one line, e.g. ``node 4 (KSampler), input 'cfg': 120 is above the maximum 100``. Muted nodes are
not checked; bypassed nodes are routed through (see ``nodeflow.engine.graph``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from nodeflow.engine import graph as graphs
from nodeflow.spec import CHOICE, STRING, WIDGET_TYPES, InputSpec, NodeSpec
from nodeflow.engine.workflow import Link, Workflow


@dataclass(frozen=True)
class Problem:
    """One reason a workflow cannot run; ``str(problem)`` is the line shown to users."""

    message: str
    node_id: str | None = None
    node_type: str | None = None
    input: str | None = None

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id}" + (f" ({self.node_type})" if self.node_type else ""))
        if self.input is not None:
            where.append(f"input {self.input!r}")
        return (", ".join(where) + ": " if where else "") + self.message

    def __contains__(self, text: str) -> bool:  # `"maximum" in problem` reads like the line
        return text in str(self)


def validate(workflow: Workflow, registry, paths=None, *, links: list[Link] | None = None,
             graph=None) -> list[Problem]:
    """Problems that stop ``workflow`` from running (empty when it can run).

    ``paths`` is needed to check choices computed from files on disk (model names); without it
    those values are not checked. ``links``/``graph``: from ``nodeflow.engine.graph`` when already made.
    """
    specs, problems = _known_specs(workflow, registry)
    problems += _check_links(workflow, specs)
    links = graphs.active_links(workflow, registry) if links is None else links
    graph = graphs.build_graph(workflow, links) if graph is None else graph
    cycle = graphs.find_cycle(graph)
    if cycle:
        problems.append(Problem("the links form a cycle: " + " -> ".join(cycle + cycle[:1])))
    linked = {(link.dst, link.dst_input) for link in links}
    for node_id, spec in specs.items():
        if workflow.nodes[node_id].mode == "normal":
            problems += _check_node(workflow, node_id, spec, linked, paths)
    if not any(spec.output_node and workflow.nodes[node_id].mode == "normal"
               for node_id, spec in specs.items()):
        problems.append(Problem("the workflow has no output node (SaveImage, PreviewImage, ...)"))
    return problems


def _known_specs(workflow: Workflow, registry) -> tuple[dict[str, NodeSpec], list[Problem]]:
    """Specs of the nodes whose type is installed; a problem for each unknown type."""
    specs: dict[str, NodeSpec] = {}
    problems: list[Problem] = []
    for node_id, instance in workflow.nodes.items():
        if instance.type in registry:
            specs[node_id] = registry.get(instance.type)
        elif instance.mode != "muted":  # a muted node never runs: its pack may be missing
            close = difflib.get_close_matches(instance.type, list(registry.specs), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else " (is its node pack installed?)"
            problems.append(Problem(f"unknown node type {instance.type!r}{hint}", node_id, instance.type))
    return specs, problems


def _check_node(workflow: Workflow, node_id: str, spec: NodeSpec, linked: set[tuple[str, str]],
                paths) -> list[Problem]:
    instance = workflow.nodes[node_id]
    problems = []
    if instance.version > spec.version:
        problems.append(Problem(f"saved by a newer version ({instance.version}) of this node than "
                                f"is installed ({spec.version})", node_id, spec.id))
    for name in instance.inputs:
        if spec.input(name) is None:
            problems.append(Problem("no such input", node_id, spec.id, name))
    for input_spec in spec.inputs:
        if (node_id, input_spec.name) in linked:
            continue
        message = _literal_problem(instance.inputs, input_spec, paths)
        if message:
            problems.append(Problem(message, node_id, spec.id, input_spec.name))
    return problems


def _literal_problem(inputs: dict, spec: InputSpec, paths) -> str | None:
    if spec.name not in inputs:
        if spec.optional:
            return None
        if not spec.is_widget:
            return "required input is not connected"
        if spec.default is None and not spec.has_computed_choices:
            return "required value is missing"
        if spec.default is None:
            return "required value is missing (choose one)"
        return None
    if not spec.is_widget:
        return "takes a link, not a value"
    return spec.check_value(inputs[spec.name], paths)


def _check_links(workflow: Workflow, specs: dict[str, NodeSpec]) -> list[Problem]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for link in workflow.links:
        target_type = workflow.nodes[link.dst].type if link.dst in workflow.nodes else None
        for end in (link.src, link.dst):
            if end not in workflow.nodes:
                problems.append(Problem(f"a link refers to a missing node {end!r}", link.dst,
                                        target_type, link.dst_input))
        source, target = specs.get(link.src), specs.get(link.dst)
        if source is None or target is None:
            continue  # missing nodes and unknown types were reported already
        if (link.dst, link.dst_input) in seen:
            problems.append(Problem("has more than one link", link.dst, target.id, link.dst_input))
        seen.add((link.dst, link.dst_input))
        problem = link_problem(source, link.src_output, target, link.dst_input)
        if problem:
            problems.append(Problem(f"link from node {link.src}: {problem}", link.dst, target.id,
                                    link.dst_input))
    return problems


def link_problem(source: NodeSpec, src_output: int, target: NodeSpec, dst_input: str) -> str | None:
    """Why output ``src_output`` of ``source`` cannot feed ``dst_input`` of ``target``, or None."""
    if not 0 <= src_output < len(source.outputs):
        return f"{source.id} has no output {src_output}"
    input_spec = target.input(dst_input)
    if input_spec is None:
        return f"{target.id} has no input {dst_input!r}"
    out_type = source.outputs[src_output].type
    if not types_compatible(out_type, input_spec.type):
        return f"a {out_type} output cannot feed a {input_spec.type} input"
    return None


def types_compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may be linked to an input of ``input_type``."""
    if output_type == input_type or "*" in (output_type, input_type):
        return True
    if input_type == CHOICE and output_type == STRING:
        return True
    return output_type == CHOICE and input_type == STRING and input_type in WIDGET_TYPES
