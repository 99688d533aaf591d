"""The ``nodeflow`` command: run, validate, list nodes, open the editor.

Kept light: torch and dearpygui are imported only by the commands that need them, so
``nodeflow --help`` starts at once. Exit codes: 0 ok; 2 anything the user can fix, found before
or while running (an invalid workflow or usage, a missing or damaged model file, a bad value, a
full disk: one line on stderr, no traceback unless ``--debug``); 1 a node failed unexpectedly (a
bug: its traceback is logged); 130 interrupted (Ctrl-C cancels the run between nodes or at the
next sampler step; files already written stay).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeflow", description="Node-graph Stable Diffusion: run workflows headless or edit them.")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument("--config", metavar="FILE",
                             help="settings file (default $NODEFLOW_CONFIG, ./nodeflow.toml, "
                                  "~/.config/nodeflow/config.toml)")
        command.add_argument("--models-dir", action="append", metavar="DIR",
                             help="a models folder (repeatable; default $NODEFLOW_MODELS_DIR or ./models)")
        command.add_argument("--output-dir", metavar="DIR", help="where images are saved (default ./output)")
        command.add_argument("--input-dir", metavar="DIR", help="where LoadImage looks (default ./input)")
        command.add_argument("--custom-nodes", metavar="DIR",
                             help="a folder of custom node modules (default $NODEFLOW_CUSTOM_NODES)")
        command.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
        command.add_argument("--verbose", "-v", action="store_true", help="log details")
        command.add_argument("--debug", action="store_true", help="log details and show tracebacks")

    run = commands.add_parser("run", help="run a workflow (JSON, ComfyUI JSON, or a PNG with one)")
    run.add_argument("workflow", type=Path)
    common(run)
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    run.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override a literal input, e.g. --set 3.seed=42 (parsed by the input's type)")
    run.add_argument("--json", action="store_true",
                     help="print a JSON summary (files written, per-node time, cache hits) on stdout")

    check = commands.add_parser("validate", help="check a workflow without running it")
    check.add_argument("workflow", type=Path)
    common(check)

    listing = commands.add_parser("nodes", help="list the available node types")
    listing.add_argument("--json", action="store_true", help="every node type with its inputs and outputs")
    common(listing)

    gui = commands.add_parser("gui", help="open the node editor")
    gui.add_argument("workflow", type=Path, nargs="?")
    gui.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    gui.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    common(gui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from nodeflow.errors import Cancelled, NodeError, NodeflowError

    handler = {"run": command_run, "validate": command_validate, "nodes": command_nodes,
               "gui": command_gui}[args.command]
    try:
        return handler(args)
    except Cancelled:
        print("nodeflow: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("nodeflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NodeflowError as error:
        if args.debug:
            logging.getLogger("nodeflow").exception("error")
        print(f"nodeflow: {error}", file=sys.stderr)
        return EXIT_FAILED if isinstance(error, NodeError) and error.is_bug else EXIT_USER_ERROR
    except OSError as error:  # the system's answer about a file or folder the user named (too long, no permission)
        if args.debug:
            logging.getLogger("nodeflow").exception("error")
        print(f"nodeflow: {error.strerror or type(error).__name__}: {error.filename or error}", file=sys.stderr)
        return EXIT_USER_ERROR


def _settings(args: argparse.Namespace):
    from nodeflow.runtime.config import load_config

    return load_config(args.config)


def _paths(args: argparse.Namespace, config=None):
    from nodeflow.runtime.paths import Paths

    return Paths.from_environment(args.models_dir, args.output_dir, args.input_dir, args.custom_nodes,
                                  config=config if config is not None else _settings(args))


def _cache(config):
    """The output cache with the settings file's budgets (GiB per device) over the defaults."""
    from nodeflow.engine.cache import DEFAULT_BUDGETS, OutputCache

    return OutputCache({**DEFAULT_BUDGETS, **config.cache_bytes})


def _registry(paths, quiet: bool = False):
    from nodeflow.engine.registry import Registry

    registry = Registry.load(paths)
    if not quiet:
        for problem in registry.load_errors:
            print(f"nodeflow: warning: node pack {problem.source} skipped: {problem.error}", file=sys.stderr)
    return registry


def command_run(args: argparse.Namespace) -> int:
    from nodeflow.engine.executor import Executor
    from nodeflow.formats import load_workflow

    config = _settings(args)
    paths = _paths(args, config)
    registry = _registry(paths, args.quiet)
    workflow = load_workflow(args.workflow, registry)
    for assignment in args.set:
        apply_override(workflow, assignment, registry)
    from nodeflow.runtime.preview_folders import preview_session

    printer = EventPrinter(quiet=args.quiet)
    with preview_session(paths) as session_paths:  # PreviewImage files last as long as the run
        result = run_interruptibly(Executor(registry, session_paths, _cache(config)), workflow,
                                   device=resolve_device(args.device), dtype=args.dtype, on_event=printer,
                                   preview_every=0)  # nothing shows previews on a terminal
    if args.json:
        summary = {"files": printer.saved, "executed": result.executed, "cached": result.cached,
                   "node_seconds": {k: round(v, 4) for k, v in result.node_seconds.items()},
                   "seconds": round(result.seconds, 3)}
        print(json.dumps(summary, indent=2))
    else:
        for path in printer.saved:
            print(path)
    if not args.quiet:
        print(f"done in {result.seconds:.1f} s ({len(result.executed)} nodes run, "
              f"{len(result.cached)} cached)", file=sys.stderr)
    return EXIT_OK


def run_interruptibly(executor, workflow, **options):
    """Run on a worker thread so that Ctrl-C sets the cancel flag and the run stops cleanly
    (between nodes, or at the next step of a long node) instead of dying mid-write. A second
    Ctrl-C aborts at once.

    The main thread waits on an Event, not ``Thread.join``: a KeyboardInterrupt inside ``join``
    can leave the thread looking finished while it still runs (CPython 3.11)."""
    cancel, done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = executor.run(workflow, cancel_event=cancel, **options)
        except BaseException as error:  # handed to the main thread, raised there
            outcome["error"] = error
        finally:
            done.set()

    try:  # a Ctrl-C may come while start() still waits for the thread, which may be running already
        threading.Thread(target=work, name="nodeflow-run", daemon=True).start()
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, lambda number, frame: abort_now())  # from now until exit
        cancel.set()
        print("\nnodeflow: stopping at the next safe point (Ctrl-C again to abort)", file=sys.stderr)
        while not done.wait(0.1):
            pass
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def abort_now() -> None:
    """The second Ctrl-C, whenever it comes (also while the interpreter shuts down after the
    cancelled run): leave at once with 130. A KeyboardInterrupt there would tear down torch under
    its threads ("terminate called without an active exception", SIGABRT). Saved files are
    whole: every write is atomic."""
    print("nodeflow: aborted", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_INTERRUPTED)


def command_validate(args: argparse.Namespace) -> int:
    from nodeflow.engine.validate import validate
    from nodeflow.formats import load_workflow

    paths = _paths(args)
    registry = _registry(paths, args.quiet)
    problems = validate(load_workflow(args.workflow, registry), registry, paths)
    for problem in problems:
        print(f"{args.workflow}: {problem}", file=sys.stderr)
    if not problems and not args.quiet:
        print(f"{args.workflow}: ok", file=sys.stderr)
    return EXIT_USER_ERROR if problems else EXIT_OK


def command_nodes(args: argparse.Namespace) -> int:
    paths = _paths(args)
    registry = _registry(paths, args.quiet)
    if args.json:
        print(json.dumps([describe_node(spec, paths) for spec in registry], indent=2, default=str))
    else:
        for spec in registry:
            print(f"{spec.category:<24} {spec.id:<32} {spec.description[:70]}")
    return EXIT_OK


def describe_node(spec, paths=None) -> dict[str, Any]:
    """A node type as plain JSON data (``nodeflow nodes --json``)."""
    inputs = []
    for item in spec.inputs:
        entry: dict[str, Any] = {"name": item.name, "type": item.type, "optional": item.optional}
        if item.is_widget:
            entry["default"] = item.default
        for option in ("min", "max", "step", "tooltip"):
            if getattr(item, option) not in (None, ""):
                entry[option] = getattr(item, option)
        if item.multiline:
            entry["multiline"] = True
        if item.seed:
            entry["seed"] = True
        if item.options is not None:
            entry["choices"] = item.choices(paths)
        inputs.append(entry)
    return {"id": spec.id, "display": spec.display, "category": spec.category,
            "description": spec.description, "version": spec.version,
            "output_node": spec.output_node, "inputs": inputs,
            "outputs": [{"name": o.label, "type": o.type} for o in spec.outputs]}


def command_gui(args: argparse.Namespace) -> int:
    from nodeflow.errors import NodeflowError

    try:
        from nodeflow.gui import app
    except ImportError as error:
        raise NodeflowError(f"the desktop editor is not available: {error}") from None
    config = _settings(args)
    return app.main(args.workflow, _paths(args, config), cache=_cache(config), device=resolve_device(args.device),
                    dtype=args.dtype, preview_every=config.preview_every)


def apply_override(workflow, assignment: str, registry=None) -> None:
    """Apply ``NODE.INPUT=VALUE`` to a workflow's literal inputs. With a registry the value is
    parsed by the input's type (the executor validates it); without one, as JSON, else text."""
    from nodeflow.errors import WorkflowFormatError

    target, sep, raw = assignment.partition("=")
    node_id, dot, input_name = target.partition(".")
    if not sep or not dot or not input_name:
        raise WorkflowFormatError(f"--set {assignment!r}: expected NODE.INPUT=VALUE")
    if node_id not in workflow.nodes:
        raise WorkflowFormatError(f"--set {assignment!r}: no node {node_id!r} in the workflow")
    node_type = workflow.nodes[node_id].type
    input_spec = None
    if registry is not None and node_type in registry:
        input_spec = registry.get(node_type).input(input_name)
        if input_spec is None:
            known = ", ".join(s.name for s in registry.get(node_type).widget_inputs)
            raise WorkflowFormatError(f"--set {assignment!r}: node {node_id} ({node_type}) has no "
                                      f"input {input_name!r}; its values: {known or 'none'}")
    try:
        raw.encode("utf-8")  # bytes that are not UTF-8 reach Python as lone surrogates: no file can hold them
        value = parse_value(raw, input_spec.type if input_spec else None)
    except UnicodeEncodeError:
        raise WorkflowFormatError(f"--set {assignment!r}: the value is not UTF-8 text") from None
    except (ValueError, WorkflowFormatError) as error:
        raise WorkflowFormatError(f"--set {assignment!r}: {error}") from None
    workflow.nodes[node_id].inputs[input_name] = value


def parse_value(raw: str, socket_type: str | None = None) -> Any:
    """Text from the command line as a value of ``socket_type`` (INT, FLOAT, BOOLEAN, text)."""
    if socket_type == "INT":
        try:
            return int(raw) if raw.strip().lstrip("+-").isdigit() else int(raw, 0)  # 42, 0x2a
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if socket_type == "FLOAT":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if socket_type == "BOOLEAN":
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{raw!r} is not true or false")
        return raw.lower() in TRUE_WORDS
    if socket_type in ("STRING", "CHOICE"):
        return raw
    from nodeflow.formats.json_text import NotJson, parse_json

    try:
        return parse_json(raw, "the value")  # within the bounds of workflow files (depth, digits, Unicode)
    except NotJson:
        return raw  # text


def resolve_device(name: str) -> str:
    """``auto`` -> the best available device; an explicit one is checked to exist (imports torch)."""
    from nodeflow.errors import NodeflowError
    from nodeflow.runtime.devices import resolve_device as resolve

    try:
        return str(resolve(name))
    except ValueError as error:
        raise NodeflowError(str(error)) from None


class EventPrinter:
    """Prints progress on stderr (the CLI is an application; the library logs) and collects
    the files written."""

    BAR_WIDTH = 24

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.saved: list[str] = []

    def __call__(self, event) -> None:
        from nodeflow.engine import events

        if isinstance(event, events.FileSaved):
            self.saved.append(str(event.path))
        if self.quiet:
            return
        if isinstance(event, events.NodeStarted):
            print(f"[{event.index}/{event.total}] {event.node_type} (node {event.node_id})", file=sys.stderr)
        elif isinstance(event, events.NodeCached):
            print(f"[cached] {event.node_type} (node {event.node_id})", file=sys.stderr)
        elif isinstance(event, events.Progress) and event.total:
            done = round(self.BAR_WIDTH * min(event.step, event.total) / event.total)
            bar = "#" * done + "." * (self.BAR_WIDTH - done)
            end = "\n" if event.step >= event.total else "\r"
            print(f"    [{bar}] {event.step}/{event.total}", end=end, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
