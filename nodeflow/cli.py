"""The ``nodeflow`` command: run, validate, list nodes, open the editor.

Kept light: torch and dearpygui are imported only by the commands that need them, so
``nodeflow --help`` starts at once. A user's mistake prints one line on stderr and exits with
status 2; a bug prints its traceback and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeflow", description="Node-graph Stable Diffusion: run workflows headless or edit them.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log details (and tracebacks)")
    commands = parser.add_subparsers(dest="command", required=True)

    def folders(command: argparse.ArgumentParser) -> None:
        command.add_argument("--models-dir", action="append", metavar="DIR",
                             help="a models folder (repeatable; default $NODEFLOW_MODELS_DIR or ./models)")
        command.add_argument("--output-dir", metavar="DIR", help="where images are saved (default ./output)")
        command.add_argument("--input-dir", metavar="DIR", help="where LoadImage looks (default ./input)")
        command.add_argument("--custom-nodes", metavar="DIR", help="a folder of custom node modules")

    run = commands.add_parser("run", help="run a workflow (JSON, ComfyUI JSON, or a PNG with one)")
    run.add_argument("workflow", type=Path)
    folders(run)
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    run.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override a literal input, e.g. --set 3.seed=42 (value parsed as JSON, else text)")
    run.add_argument("--json", action="store_true", help="print a JSON summary (saved files) on stdout")

    check = commands.add_parser("validate", help="check a workflow without running it")
    check.add_argument("workflow", type=Path)
    folders(check)

    listing = commands.add_parser("nodes", help="list the available node types")
    listing.add_argument("--json", action="store_true")
    folders(listing)

    gui = commands.add_parser("gui", help="open the node editor")
    gui.add_argument("workflow", type=Path, nargs="?")
    folders(gui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from nodeflow.errors import NodeflowError

    try:
        return {"run": command_run, "validate": command_validate, "nodes": command_nodes,
                "gui": command_gui}[args.command](args)
    except NodeflowError as error:
        if args.verbose:
            logging.getLogger("nodeflow").exception("error")
        print(f"nodeflow: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("nodeflow: interrupted", file=sys.stderr)
        return 130


def _paths(args: argparse.Namespace):
    from nodeflow.paths import Paths

    return Paths.from_environment(args.models_dir, args.output_dir, args.input_dir, args.custom_nodes)


def _registry(paths):
    from nodeflow.registry import Registry

    registry = Registry.load(paths)
    for problem in registry.load_errors:
        print(f"nodeflow: warning: node pack {problem.source} skipped: {problem.error}", file=sys.stderr)
    return registry


def _load(args: argparse.Namespace, registry):
    from nodeflow.workflow import load_workflow

    return load_workflow(args.workflow, registry)


def command_run(args: argparse.Namespace) -> int:
    from nodeflow.executor import Executor

    paths = _paths(args)
    registry = _registry(paths)
    workflow = _load(args, registry)
    for assignment in args.set:
        apply_override(workflow, assignment)
    device = resolve_device(args.device)
    saved: list[str] = []
    result = Executor(registry, paths).run(workflow, device=device, dtype=args.dtype,
                                           on_event=EventPrinter(saved))
    summary = {"saved": saved, "executed": result.executed, "cached": result.cached,
               "seconds": round(result.seconds, 3)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for path in saved:
            print(path)
        print(f"done in {result.seconds:.1f} s ({len(result.executed)} nodes run, "
              f"{len(result.cached)} cached)", file=sys.stderr)
    return 0


def command_validate(args: argparse.Namespace) -> int:
    from nodeflow.validate import validate

    paths = _paths(args)
    registry = _registry(paths)
    problems = validate(_load(args, registry), registry, paths)
    for problem in problems:
        print(f"{args.workflow}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.workflow}: ok", file=sys.stderr)
    return EXIT_USER_ERROR if problems else 0


def command_nodes(args: argparse.Namespace) -> int:
    registry = _registry(_paths(args))
    if args.json:
        print(json.dumps([{"id": s.id, "display": s.display, "category": s.category,
                           "description": s.description,
                           "inputs": [{"name": i.name, "type": i.type} for i in s.inputs],
                           "outputs": [{"name": o.label, "type": o.type} for o in s.outputs]}
                          for s in registry], indent=2))
    else:
        for spec in registry:
            print(f"{spec.category:<24} {spec.id:<32} {spec.description[:70]}")
    return 0


def command_gui(args: argparse.Namespace) -> int:
    from nodeflow.errors import NodeflowError

    try:
        from nodeflow.gui import app
    except ImportError as error:
        raise NodeflowError(f"the editor is not available: {error}") from None
    return app.main(args.workflow, _paths(args))


def apply_override(workflow, assignment: str) -> None:
    """Apply ``NODE.INPUT=VALUE`` to a workflow's literal inputs."""
    from nodeflow.errors import WorkflowFormatError

    target, sep, raw = assignment.partition("=")
    node_id, dot, input_name = target.partition(".")
    if not sep or not dot or not input_name:
        raise WorkflowFormatError(f"--set {assignment!r}: expected NODE.INPUT=VALUE")
    if node_id not in workflow.nodes:
        raise WorkflowFormatError(f"--set {assignment!r}: no node {node_id!r} in the workflow")
    workflow.nodes[node_id].inputs[input_name] = parse_value(raw)


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class EventPrinter:
    """Prints progress on stderr (the CLI is an application; the library logs)."""

    def __init__(self, saved: list[str]) -> None:
        self.saved = saved

    def __call__(self, event) -> None:
        from nodeflow import events

        if isinstance(event, events.NodeStarted):
            print(f"[{event.index}/{event.total}] {event.node_type} (node {event.node_id})", file=sys.stderr)
        elif isinstance(event, events.NodeCached):
            print(f"[cached] {event.node_type} (node {event.node_id})", file=sys.stderr)
        elif isinstance(event, events.Progress) and event.total:
            end = "\n" if event.step >= event.total else "\r"
            print(f"    step {event.step}/{event.total}", end=end, file=sys.stderr, flush=True)
        elif isinstance(event, events.FileSaved):
            self.saved.append(str(event.path))


if __name__ == "__main__":
    raise SystemExit(main())
