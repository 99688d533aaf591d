"""A sweep started from the editor's sweep panel: what can be swept, the checks before anything
runs, and the task the editor's worker thread runs (no dearpygui here: sweep_panel.py draws it).

The panel's axes are ``(target, VALUES)`` pairs, VALUES in the CLI's syntax (``4,6,8``, ``1..8``,
``0.5..1.0:0.25``); ``prepare_sweep`` turns them into ``--sweep NODE.INPUT=VALUES`` texts and
checks them with the CLI's parser (``nodeflow.sweeps.spec``), so a bad value is the CLI's one-line
message. The jobs then run with ``nodeflow.sweeps.run.run_sweep`` on the editor's executor (one
executor: models load once), and the task posts ``SweepJobStarted`` and ``SweepDone`` between the
executor's own events.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nodeflow.engine.validate import validate
from nodeflow.sweeps.jobs import SweepPlan, plan_jobs
from nodeflow.sweeps.manifest import Manifest, new_sweep_folder, sweep_key
from nodeflow.sweeps.run import job_workflow, run_sweep
from nodeflow.sweeps.spec import TYPED, SweepError, SweepSpec, parse_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepTarget:
    """A literal input of a node on screen that a sweep can vary."""

    node_id: str
    input_name: str
    label: str  # as the panel's combo lists it: "KSampler . seed"

    @property
    def key(self) -> str:
        return f"{self.node_id}.{self.input_name}"


@dataclass(frozen=True)
class SweepJobStarted:
    """A sweep's job began (``position`` of ``total``, from 1)."""

    position: int
    total: int
    values: dict


@dataclass(frozen=True)
class SweepDone:
    """The sweep ended (finished, failed jobs included, or stopped); ``grids``: the grid images."""

    manifest: Path
    grids: tuple[Path, ...]
    done: int
    total: int
    cancelled: bool
    errors: tuple[str, ...]  # one line per failed job


@dataclass(frozen=True)
class PreparedSweep:
    """A checked sweep, ready to run: the graph as it was, the plan and its manifest on disk."""

    workflow: object
    spec: SweepSpec
    plan: SweepPlan
    manifest: Manifest


def sweep_targets(workflow, registry) -> list[SweepTarget]:
    """The widget inputs without a link of the workflow's known, active nodes, in node order, each
    labelled "node title . input" (a title two nodes share gets the node id: "Title (6) . text")."""
    titles: dict[str, str] = {}
    for node_id, node in workflow.nodes.items():
        if node.type in registry and node.mode == "normal":
            titles[node_id] = node.title or registry.get(node.type).display
    shared = {title for title, count in Counter(titles.values()).items() if count > 1}
    targets = []
    for node_id, title in titles.items():
        shown = f"{title} ({node_id})" if title in shared else title
        for spec in registry.get(workflow.nodes[node_id].type).widget_inputs:
            if spec.type in TYPED and workflow.input_link(node_id, spec.name) is None:
                targets.append(SweepTarget(node_id, spec.name, f"{shown} . {spec.name}"))
    return targets


def prepare_sweep(workflow, registry, paths, axes: list[tuple[SweepTarget, str]], name: str) -> PreparedSweep:
    """Check the axes (X first) as the CLI checks ``--sweep`` options, plan the jobs, validate the
    first one, and create the sweep's folder and manifest under the output folder. Raises
    ``SweepError`` (one line) before anything is written."""
    if not axes:
        raise SweepError("choose a node input to sweep (X)")
    snapshot = copy.deepcopy(workflow)
    # The CLI's first --sweep is the grid's X axis, the second its Y axis.
    spec = parse_spec([f"{target.key}={values}" for target, values in axes], snapshot, registry, paths,
                      names=[f"{axis} ({target.label})" for axis, (target, _) in zip("XY", axes)])
    plan = plan_jobs(spec, snapshot, registry)
    problems = validate(job_workflow(snapshot, plan.jobs[0], ""), registry, paths)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SweepError(f"the workflow cannot run: {problems[0]}{more}")
    folder = new_sweep_folder(paths.output_dir, name)
    manifest = Manifest.create(folder / "manifest.json", key=sweep_key(snapshot, spec), workflow_name=name,
                               output_dir=paths.output_dir, spec=spec, plan=plan)
    return PreparedSweep(snapshot, spec, plan, manifest)


def sweep_task(prepared: PreparedSweep, executor, font_path: Path | None,
               **options) -> Callable[[object, Callable[[object], None]], None]:
    """What the worker thread runs (``task(cancel_event, post)``): the sweep's jobs on
    ``executor``, their events and ``SweepJobStarted`` posted as they come, ``SweepDone`` last.
    ``options``: ``Executor.run``'s (device, dtype, preview_every)."""
    def task(cancel_event, post) -> None:
        outcome = run_sweep(executor, prepared.workflow, prepared.manifest, cancel_event=cancel_event,
                            on_event=post, font_path=font_path,
                            on_job_started=lambda job, position, total: post(
                                SweepJobStarted(position, total, dict(job.values))),
                            **options)
        errors = tuple(f"job {r.index}: {r.error}" for r in outcome.results if r.status == "failed")
        done = prepared.manifest.counts()["done"]
        logger.info("sweep %s: %d of %d jobs done", prepared.manifest.path, done, len(prepared.manifest.jobs))
        post(SweepDone(prepared.manifest.path, tuple(outcome.grids), done, len(prepared.manifest.jobs),
                       outcome.cancelled, errors))
    return task

