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

    def model_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
        command.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
        command.add_argument("--compile", action="store_true",
                             help="compile the U-Net with torch.compile (the first run takes longer; later runs "
                                  "of the same shapes are faster, mostly on a GPU)")
        command.add_argument("--vram", default="auto", choices=["auto", "low", "normal", "high"],
                             help="GPU memory use (CUDA; elsewhere every mode is normal): low keeps the weights in "
                                  "CPU memory, streams the U-Net's blocks to the GPU one at a time, copies the VAE "
                                  "there for each encode/decode and runs the text encoders on the CPU (SDXL in 4 GB, "
                                  "slower); normal and high (the same in nodeflow) keep every model on the GPU; auto: "
                                  "low when the GPU's free memory is under the model file's size x 1.5 + 1 GiB")

    run = commands.add_parser("run", help="run a workflow (JSON, ComfyUI JSON, or a PNG with one)")
    run.add_argument("workflow", type=Path)
    common(run)
    model_options(run)
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override a literal input, e.g. --set 3.seed=42 (parsed by the input's type)")
    run.add_argument("--json", action="store_true",
                     help="print a JSON summary (files written, per-node time, cache hits) on stdout")
    run.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=VALUES",
                     help="run once per value, e.g. --sweep 3.seed=1..8; VALUES: a list 4,6,8, a range 1..8 or "
                          "1..20:4 or 0.5..1.0:0.25 (A..B:STEP), or @FILE (one value per line); repeatable: "
                          "every combination; writes a grid and a manifest under OUTPUT/sweeps/")
    run.add_argument("--zip", action="store_true",
                     help="pair the --sweep values (equal lengths) instead of combining each with each")
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run N times (for each sweep job), every seed moving on as its control-after-generate "
                          "says (fixed, increment, decrement, randomize: the default), as the editor's queue")
    run.add_argument("--resume", type=Path, metavar="MANIFEST",
                     help="continue an interrupted sweep from its manifest (the same workflow and sweep "
                          "options): finished jobs are skipped")
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run the sweep's jobs on a Ray cluster at ADDRESS (HOST:PORT, ray://HOST:PORT or auto), "
                          "or without one on a new local cluster (127.0.0.1 only); the files, grids and manifest "
                          "are written here; needs pip install 'nodeflow[ray]'")
    run.add_argument("--ray-workers", type=int, metavar="N",
                     help="with --ray: how many workers (Ray actors) to start (default: one per GPU of the "
                          "cluster, else one per node)")

    check = commands.add_parser("validate", help="check a workflow without running it")
    check.add_argument("workflow", type=Path)
    common(check)

    listing = commands.add_parser("nodes", help="list the available node types")
    listing.add_argument("--json", action="store_true", help="every node type with its inputs and outputs")
    common(listing)

    gui = commands.add_parser("gui", help="open the node editor")
    gui.add_argument("workflow", type=Path, nargs="?")
    model_options(gui)
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
    if args.sweep or args.zip or args.repeat != 1 or args.resume is not None or args.ray is not None:
        return command_sweep(args, config, paths, registry, workflow)
    from nodeflow.runtime.preview_folders import preview_session

    printer = EventPrinter(quiet=args.quiet)
    with preview_session(paths) as session_paths:  # PreviewImage files last as long as the run
        result = run_interruptibly(Executor(registry, session_paths, _cache(config)), workflow,
                                   **_model_options(args), on_event=printer,
                                   preview_every=0)  # nothing shows previews on a terminal
    if args.json:
        summary = {"files": printer.saved, "texts": printer.texts, "executed": result.executed,
                   "cached": result.cached,
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


def command_sweep(args: argparse.Namespace, config, paths, registry, workflow) -> int:
    """``run`` with ``--sweep``/``--repeat``/``--resume``: every value is checked, the jobs planned
    and the first one validated before any work; then the jobs run in one executor (see
    ``nodeflow.sweeps``), or on Ray workers with ``--ray`` (their models checked on them first).
    Exit 130 after a Ctrl-C (finished jobs kept, ``--resume`` continues), 1 or 2 when a job failed
    (by the usual rule), else 0."""
    from contextlib import ExitStack
    from dataclasses import replace

    from nodeflow.engine.executor import Executor
    from nodeflow.engine.validate import validate
    from nodeflow.errors import ValidationError
    from nodeflow.runtime.preview_folders import preview_session
    from nodeflow.sweeps.jobs import Job, plan_jobs
    from nodeflow.sweeps.manifest import Manifest, sweep_key
    from nodeflow.sweeps.grid import font_file
    from nodeflow.sweeps.run import job_workflow, run_sweep
    from nodeflow.sweeps.spec import SweepError, parse_spec

    if args.resume is not None and not args.sweep and args.repeat == 1:
        raise SweepError("--resume continues a sweep: give the --sweep/--zip/--repeat options of the run it resumes")
    if args.ray is not None:
        from nodeflow.sweeps.ray_backend import import_ray

        import_ray()  # one line naming the extra when Ray is missing
    if args.ray_workers is not None and (args.ray is None or args.ray_workers < 1):
        raise SweepError(f"--ray-workers {args.ray_workers}: needs --ray, and a number of workers from 1")
    checked = paths if args.ray is None else None  # on Ray the workers check the model files, on their nodes
    spec = parse_spec(args.sweep, workflow, registry, checked, zip=args.zip, repeat=args.repeat)
    key = sweep_key(workflow, spec)
    manifest = plan = None
    if args.resume is not None:
        manifest = Manifest.load(args.resume)
        manifest.check_key(key)
        if args.output_dir and Path(args.output_dir).resolve() != manifest.output_dir:
            raise SweepError(f"--output-dir {args.output_dir} is not the sweep's output folder "
                             f"{manifest.output_dir} (in {args.resume}); leave it out to resume there")
        paths = replace(paths, output_dir=manifest.output_dir)
        first = Job.from_dict(manifest.jobs[0])
    else:
        plan = plan_jobs(spec, workflow, registry)
        first = plan.jobs[0]
    problems = validate(job_workflow(workflow, first, ""), registry, checked)  # models, values, links
    if problems:
        raise ValidationError(problems)
    device = resolve_device(args.device) if args.ray is None else args.device  # on Ray: resolved by each worker
    printer = EventPrinter(quiet=args.quiet)
    reporter = SweepReporter(args.quiet)
    font_path = font_file(paths.assets_dir)
    with ExitStack() as stack:
        pool = None if args.ray is None else stack.enter_context(_ray_pool(args, workflow, manifest, plan))
        manifest = _sweep_manifest(args, manifest, paths, key, spec, plan)
        if pool is not None:
            outcome = interruptibly(lambda cancel: pool.run(
                workflow, registry, manifest, cancel_event=cancel, on_event=printer,
                on_job_started=reporter.started_on, on_job_finished=reporter.finished_on, font_path=font_path))
        else:
            session_paths = stack.enter_context(preview_session(paths))  # PreviewImage files last as long as the sweep
            executor = Executor(registry, session_paths, _cache(config))
            outcome = interruptibly(lambda cancel: run_sweep(
                executor, workflow, manifest, cancel_event=cancel, on_event=printer,
                on_job_started=reporter.started, on_job_finished=reporter.finished,
                font_path=font_path, **_model_options(args, device), preview_every=0))
    executed = sum(len(r.executed) for r in outcome.results)
    cached = sum(len(r.cached) for r in outcome.results)
    failed = [r for r in outcome.results if r.status == "failed"]
    if args.json:
        jobs = [{"index": r.index, "values": manifest.jobs[r.index]["values"], "status": r.status, "files": r.files,
                 "reused": r.reused, "executed": r.executed, "cached": r.cached, "seconds": round(r.seconds, 3),
                 "error": r.error} for r in outcome.results]
        summary = {"manifest": str(manifest.path), "grids": [str(p) for p in outcome.grids],
                   "files": printer.saved, "jobs": jobs, "skipped": outcome.skipped,
                   "nodes_run": executed, "nodes_cached": cached, "cancelled": outcome.cancelled,
                   "seconds": round(outcome.seconds, 3)}
        print(json.dumps(summary, indent=2))
    else:
        for path in printer.saved + [str(p) for p in outcome.grids]:
            print(path)
    for result in failed:
        print(f"nodeflow: job {result.index} ({_values_text(manifest.jobs[result.index]['values'])}): "
              f"{result.error}", file=sys.stderr)
    done = manifest.counts()["done"]
    if outcome.cancelled:
        print(f"nodeflow: sweep stopped: {done} of {len(manifest.jobs)} jobs done; continue with "
              f"--resume {manifest.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        share = f"{100 * cached / (executed + cached):.0f}%" if executed + cached else "-"
        print(f"sweep done in {outcome.seconds:.1f} s: {done} of {len(manifest.jobs)} jobs done, "
              f"{len(outcome.results)} run now ({executed} nodes run, {cached} cached: {share} from cache); "
              f"manifest {manifest.path}", file=sys.stderr)
    if failed:
        return EXIT_FAILED if any(r.bug for r in failed) else EXIT_USER_ERROR
    return EXIT_OK


def _sweep_manifest(args: argparse.Namespace, manifest, paths, key: str, spec, plan):
    """The resumed manifest, cleared of what unfinished jobs left, or a new one in a new folder."""
    from nodeflow.sweeps.manifest import Manifest, new_sweep_folder

    if manifest is not None:
        for path in manifest.recover():
            _note(args, f"removed {path}: written by a job that did not finish (it runs again)")
    else:
        folder = new_sweep_folder(paths.output_dir, Path(args.workflow).stem)
        manifest = Manifest.create(folder / "manifest.json", key=key, workflow_name=str(args.workflow),
                                   output_dir=paths.output_dir, spec=spec, plan=plan)
    counts = manifest.counts()
    _note(args, f"sweep of {len(manifest.jobs)} jobs ({counts['done']} done before); manifest {manifest.path}")
    return manifest


def _ray_pool(args: argparse.Namespace, workflow, manifest, plan):
    """The sweep's Ray workers (a context manager; see ``nodeflow.sweeps.ray_backend``), started
    and given the jobs' values to check on their own models and node packs before any job runs."""
    from nodeflow.sweeps.jobs import Job
    from nodeflow.sweeps.ray_backend import open_pool
    from nodeflow.sweeps.ray_worker import WorkerSettings

    def shared(path) -> str | None:  # a folder named here, as the workers must find it
        return None if path is None else str(Path(path).expanduser().resolve())

    jobs = plan.jobs if plan is not None else [Job.from_dict(e) for e in manifest.jobs if e["status"] != "done"]
    settings = WorkerSettings(workflow.to_dict(), tuple(shared(d) for d in args.models_dir or ()),
                              shared(args.input_dir), shared(args.custom_nodes), args.device, args.dtype,
                              args.compile, args.vram)
    return open_pool(args.ray, settings, args.ray_workers, list(jobs),
                     on_started=lambda workers: _note(args, "Ray workers: " + ", ".join(map(str, workers))))


def _values_text(values: dict[str, Any], limit: int = 60) -> str:
    """A job's values on one line: ``3.seed=43, 6.text='a red ...'``."""
    parts = []
    for key, value in values.items():
        shown = repr(value) if isinstance(value, str) else str(value)
        parts.append(f"{key}={shown if len(shown) <= limit else shown[:limit - 4] + '...' + shown[-1]}")
    return ", ".join(parts)


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"nodeflow: {text}", file=sys.stderr)


class SweepReporter:
    """One line on stderr as each sweep job starts and ends."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def started(self, job, position: int, total: int) -> None:
        if not self.quiet:
            print(f"[job {position}/{total}] #{job.index} {_values_text(job.values)}", file=sys.stderr)

    def started_on(self, job, worker) -> None:
        """A job handed to a Ray worker."""
        if not self.quiet:
            print(f"[{worker.name}] job #{job.index} {_values_text(job.values)}", file=sys.stderr)

    def finished_on(self, result, worker, finished: int, total: int) -> None:
        """A job back from a Ray worker: the sweep's progress, then the job's line."""
        if not self.quiet:
            print(f"[{finished}/{total} jobs] #{result.index} on {worker.name}:", end="", file=sys.stderr)
            self.finished(result, indent=" ")

    def finished(self, result, indent: str = "    ") -> None:
        if self.quiet:
            return
        if result.status == "done":
            print(f"{indent}done in {result.seconds:.1f} s ({len(result.executed)} nodes run, "
                  f"{len(result.cached)} cached)", file=sys.stderr)
        else:
            print(f"{indent}{result.status}" + (f": {result.error}" if result.error else ""), file=sys.stderr)


def run_interruptibly(executor, workflow, **options):
    """Run on a worker thread so that Ctrl-C sets the cancel flag and the run stops cleanly
    (between nodes, or at the next step of a long node) instead of dying mid-write. A second
    Ctrl-C aborts at once."""
    return interruptibly(lambda cancel: executor.run(workflow, cancel_event=cancel, **options))


def interruptibly(work):
    """``work(cancel_event)`` on a worker thread; Ctrl-C sets the event (``work`` stops at its
    next safe point and returns or raises ``Cancelled``), a second one aborts at once.

    The main thread waits on an Event, not ``Thread.join``: a KeyboardInterrupt inside ``join``
    can leave the thread looking finished while it still runs (CPython 3.11)."""
    cancel, done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work(cancel)
        except BaseException as error:  # handed to the main thread, raised there
            outcome["error"] = error
        finally:
            done.set()

    try:  # a Ctrl-C may come while start() still waits for the thread, which may be running already
        threading.Thread(target=target, name="nodeflow-run", daemon=True).start()
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
    from nodeflow.loading.native_size import native_size  # the editor may not import loading: given to it

    config = _settings(args)
    return app.main(args.workflow, _paths(args, config), cache=_cache(config), preview_every=config.preview_every,
                    native_size=native_size, **_model_options(args))


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
    """Text from the command line as a value of ``socket_type`` (INT, FLOAT, BOOLEAN, text); an
    untyped value as JSON, else text. Typed values parse as ``--sweep`` values do."""
    from nodeflow.sweeps.spec import TYPED, parse_typed

    if socket_type in TYPED:
        return parse_typed(raw, socket_type)
    from nodeflow.formats.json_text import NotJson, parse_json

    try:
        return parse_json(raw, "the value")  # within the bounds of workflow files (depth, digits, Unicode)
    except NotJson:
        return raw  # text


def _model_options(args, device: str | None = None) -> dict[str, Any]:
    """Executor.run's model options from the command line (``device``: already resolved)."""
    return dict(device=device or resolve_device(args.device), dtype=args.dtype, compile=args.compile,
                vram=args.vram)


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
        self.texts: list[dict[str, str]] = []  # what PreviewAny nodes showed: {"node": id, "text": ...}

    def __call__(self, event) -> None:
        from nodeflow.engine import events

        if isinstance(event, events.FileSaved):
            self.saved.append(str(event.path))
        if isinstance(event, events.TextShown):  # a result, printed even when quiet
            self.texts.append({"node": event.node_id, "text": event.text})
            print(f"[text] node {event.node_id}:\n{event.text}", file=sys.stderr)
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
