"""Running a sweep's jobs on one executor: models load once and every unchanged node is served
from its cache; the manifest is updated as each job starts and ends; the grids come last.

A job is the base workflow with the job's values set (``job_workflow``); its images carry the
sweep's id, the job's index and its values in a ``sweep`` text chunk (through SaveImage's
``image_text``, see nodes/save.py). ``run_job`` returns a ``JobResult``, plain data another
backend can produce as well. A job that fails is recorded (node and message) and the others go
on; a cancel (Ctrl-C) stops at the next safe point and keeps what finished.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodeflow.engine import events
from nodeflow.errors import Cancelled, NodeError, NodeflowError, ValidationError
from nodeflow.sweeps.grid import draw_sweep_grids
from nodeflow.sweeps.jobs import Job, apply_values
from nodeflow.sweeps.manifest import IMAGE_CHUNK, Manifest

IMAGE_TEXT = "image_text"  # SaveImage's ui entry of extra text chunks (nodes/save.py)


@dataclass
class JobResult:
    """What one job did: ``status`` done, failed or cancelled; the files it wrote; the files of
    output nodes served from the cache (written by an earlier job, the same image); which nodes
    ran and which came from the cache."""

    index: int
    status: str
    files: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    bug: bool = False  # failed unexpectedly (a bug in a node), not a mistake the user can fix

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepOutcome:
    """A sweep run (or the resumed part of one)."""

    results: list[JobResult]  # the jobs run now, in order
    skipped: list[int]  # jobs done before (``--resume``)
    grids: list[Path]
    cancelled: bool
    seconds: float


def job_workflow(base, job: Job, sweep_id: str):
    """A copy of ``base`` with ``job``'s values, marked so that its images name the job."""
    workflow = base.copy()
    apply_values(workflow, job.values)
    note = {"id": sweep_id, "job": job.index, "values": job.values}
    workflow.ui[IMAGE_TEXT] = {IMAGE_CHUNK: json.dumps(note, ensure_ascii=True, default=str)}
    return workflow


def run_job(executor, workflow, index: int, *, cancel_event: threading.Event | None = None,
            on_event: Callable[[events.Event], None] | None = None, **options) -> JobResult:
    """Run one job's workflow; never raises for a failing or cancelled job (see ``status``)."""
    written: list[str] = []

    def listen(event: events.Event) -> None:
        if isinstance(event, events.FileSaved):
            written.append(str(event.path))
        if on_event is not None:
            on_event(event)

    started = time.perf_counter()
    try:
        result = executor.run(workflow, on_event=listen, cancel_event=cancel_event, **options)
    except Cancelled:
        return JobResult(index, "cancelled", written, seconds=time.perf_counter() - started)
    except ValidationError as error:
        message = "; ".join(map(str, error.problems))
        return JobResult(index, "failed", written, seconds=time.perf_counter() - started, error=message)
    except NodeError as error:
        return JobResult(index, "failed", written, seconds=time.perf_counter() - started, error=str(error),
                         bug=error.is_bug)
    except NodeflowError as error:
        return JobResult(index, "failed", written, seconds=time.perf_counter() - started, error=str(error))
    reused = []
    for node_id in result.cached:
        for report in result.outputs.get(node_id, ()):
            if isinstance(report, dict):
                reused += [str(p) for p in report.get("images", ()) if str(p) not in written]
    return JobResult(index, "done", written, reused, list(result.executed), list(result.cached),
                     time.perf_counter() - started)


def run_sweep(executor, workflow, manifest: Manifest, *, cancel_event: threading.Event | None = None,
              on_event: Callable[[events.Event], None] | None = None,
              on_job_started: Callable[[Job, int, int], None] | None = None,
              on_job_finished: Callable[[JobResult], None] | None = None,
              font_path: Path | None = None, **options) -> SweepOutcome:
    """Run the manifest's jobs that are not done, in order, on ``executor``; then draw the grids
    (also after a cancel: of what finished). ``options``: ``Executor.run``'s (device, dtype, ...)."""
    cancel_event = cancel_event or threading.Event()
    started = time.perf_counter()
    results: list[JobResult] = []
    skipped = [entry["index"] for entry in manifest.jobs if entry["status"] == "done"]
    to_run = [Job.from_dict(entry) for entry in manifest.jobs if entry["status"] != "done"]
    cancelled = False
    for position, job in enumerate(to_run, start=1):
        if cancel_event.is_set():
            cancelled = True
            break
        if on_job_started is not None:
            on_job_started(job, position, len(to_run))
        manifest.start(job.index)
        result = run_job(executor, job_workflow(workflow, job, manifest.id), job.index,
                         cancel_event=cancel_event, on_event=on_event, **options)
        manifest.finish(job.index, result.to_dict())
        results.append(result)
        if on_job_finished is not None:
            on_job_finished(result)
        if result.status == "cancelled":
            cancelled = True
            break
    grids = finish_sweep(manifest, font_path)
    return SweepOutcome(results, skipped, grids, cancelled, time.perf_counter() - started)


def finish_sweep(manifest: Manifest, font_path: Path | None = None) -> list[Path]:
    """Draw the grids of what finished (also after a cancel) and record them in the manifest."""
    grids = draw_sweep_grids(manifest.data, manifest.path.parent, font_path)
    manifest.data["grids"] = [str(path) for path in grids]
    manifest.save()
    return grids
