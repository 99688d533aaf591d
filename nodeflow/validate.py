"""Check a workflow before anything runs: every problem, each naming its node and input."""

from __future__ import annotations

from nodeflow import graph as graphs
from nodeflow.spec import CHOICE, STRING, WIDGET_TYPES, InputSpec, NodeSpec
from nodeflow.workflow import Link, Workflow


def validate(workflow: Workflow, registry, paths=None) -> list[str]:
    """Problems that stop ``workflow`` from running (empty when it can run).

    ``paths`` is needed to check choices computed from files on disk (model names); without it
    those values are not checked.
    """
    problems: list[str] = []
    specs: dict[str, NodeSpec] = {}
    for node_id, instance in workflow.nodes.items():
        if instance.type not in registry:
            problems.append(f"node {node_id}: unknown node type {instance.type!r} "
                            "(is its node pack installed?)")
        else:
            specs[node_id] = registry.get(instance.type)
    problems += _check_links(workflow, specs)
    links = graphs.active_links(workflow, registry)
    cycle = graphs.find_cycle(graphs.build_graph(workflow, links))
    if cycle:
        problems.append("the links form a cycle: " + " -> ".join(cycle + cycle[:1]))
    linked = {(link.dst, link.dst_input) for link in links}
    for node_id, spec in specs.items():
        instance = workflow.nodes[node_id]
        if instance.mode != "normal":
            continue
        where = f"node {node_id} ({spec.id})"
        if instance.version > spec.version:
            problems.append(f"{where}: saved by a newer version ({instance.version}) of this node "
                            f"than is installed ({spec.version})")
        for name in instance.inputs:
            if spec.input(name) is None:
                problems.append(f"{where}: unknown input {name!r}")
        for input_spec in spec.inputs:
            if (node_id, input_spec.name) in linked:
                continue
            problem = _literal_problem(instance.inputs, input_spec, paths)
            if problem:
                problems.append(f"{where}, input {input_spec.name!r}: {problem}")
    if not any(spec.output_node and workflow.nodes[node_id].mode == "normal"
               for node_id, spec in specs.items()):
        problems.append("the workflow has no output node (SaveImage, PreviewImage, ...)")
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


def _check_links(workflow: Workflow, specs: dict[str, NodeSpec]) -> list[str]:
    problems = []
    seen: dict[tuple[str, str], Link] = {}
    for link in workflow.links:
        source, target = specs.get(link.src), specs.get(link.dst)
        if source is None or target is None:
            continue  # unknown types were reported already
        where = f"link from node {link.src} to node {link.dst} ({link.dst_input!r})"
        if not 0 <= link.src_output < len(source.outputs):
            problems.append(f"{where}: {source.id} has no output {link.src_output}")
            continue
        input_spec = target.input(link.dst_input)
        if input_spec is None:
            problems.append(f"{where}: {target.id} has no input {link.dst_input!r}")
            continue
        if (link.dst, link.dst_input) in seen:
            problems.append(f"{where}: the input already has a link")
        seen[(link.dst, link.dst_input)] = link
        out_type = source.outputs[link.src_output].type
        if not types_compatible(out_type, input_spec.type):
            problems.append(f"{where}: {out_type} output cannot feed a {input_spec.type} input")
    return problems


def types_compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may be linked to an input of ``input_type``."""
    if output_type == input_type or "*" in (output_type, input_type):
        return True
    if input_type == CHOICE and output_type == STRING:
        return True
    return output_type == CHOICE and input_type == STRING and input_type in WIDGET_TYPES
