"""The worker of a sweep on Ray: one actor holding a registry, an executor's cache and the sweep's
workflow, running the jobs it is given one after the other (``nodeflow.sweeps.ray_backend`` makes
it an actor; this module needs no Ray and imports nothing heavy until the actor starts).

Models come from the worker node's own models folders (``$NODEFLOW_MODELS_DIR``, its settings file,
or ``./models``) unless the driver names shared ones (``--models-dir``). Each job saves into a
private folder under the node's temporary folder; its files go back to the driver as bytes
(``nodeflow.sweeps.transfer``) and the folder is deleted. ``cancel`` (called while a job runs: the
actor runs two calls at a time) stops the running job at its next safe point and every later one.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker is given once, at its start."""

    workflow: dict[str, Any]  # the sweep's base workflow (Workflow.to_dict: nodes, links, ui)
    models_dirs: tuple[str, ...] = ()  # shared model folders (--models-dir); empty: the node's own
    input_dir: str | None = None
    custom_nodes: str | None = None
    device: str = "auto"  # resolved on the worker
    dtype: str = "auto"
    compile: bool = False
    vram: str = "auto"


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is, for progress lines and for tests."""

    name: str
    pid: int
    host: str
    device: str

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid} on {self.host}, {self.device})"


class SweepWorker:
    """One executor and its cache; see the module docstring."""

    def __init__(self, name: str, settings: WorkerSettings) -> None:
        from nodeflow.engine.cache import DEFAULT_BUDGETS, OutputCache
        from nodeflow.engine.registry import Registry
        from nodeflow.engine.workflow import Workflow
        from nodeflow.runtime.config import load_config
        from nodeflow.runtime.devices import resolve_device
        from nodeflow.runtime.paths import Paths

        config = load_config()  # this node's settings file, if any
        self._root = Path(tempfile.mkdtemp(prefix="nodeflow-ray-"))
        paths = Paths.from_environment(list(settings.models_dirs) or None, str(self._root), settings.input_dir,
                                       settings.custom_nodes, config=config)
        self._paths = replace(paths, previews_dir=self._root / "previews")  # PreviewImage's files go at close
        self._registry = Registry.load(self._paths)
        for problem in self._registry.load_errors:
            logger.warning("worker %s: node pack %s skipped: %s", name, problem.source, problem.error)
        self._cache = OutputCache({**DEFAULT_BUDGETS, **config.cache_bytes})
        self._workflow = Workflow.from_dict(settings.workflow, "the sweep's workflow")
        self._models = dict(dtype=settings.dtype, compile=settings.compile, vram=settings.vram)
        self._cancel = threading.Event()
        self._jobs_run = 0
        self.info = WorkerInfo(name, os.getpid(), socket.gethostname(), str(resolve_device(settings.device)))

    def describe(self) -> WorkerInfo:
        return self.info

    def check(self, value_sets: list[dict[str, Any]]) -> list[str]:
        """Problems (one line each) of the workflow with each set of values, on this worker's
        models and node packs; empty when every one can run."""
        from nodeflow.engine.validate import validate
        from nodeflow.sweeps.jobs import apply_values

        problems: dict[str, None] = {}
        for values in value_sets:
            workflow = self._workflow.copy()
            apply_values(workflow, values)
            problems.update(dict.fromkeys(str(p) for p in validate(workflow, self._registry, self._paths)))
        return list(problems)

    def run(self, job: dict[str, Any], sweep_id: str) -> dict[str, Any]:
        """Run one job (``Job.to_dict``): ``{"result": JobResult.to_dict(), "files": [ShippedFile]}``."""
        from nodeflow.engine import events
        from nodeflow.engine.executor import Executor
        from nodeflow.sweeps.jobs import Job
        from nodeflow.sweeps.run import job_workflow, run_job
        from nodeflow.sweeps.transfer import pack_files

        self._jobs_run += 1
        folder = self._root / f"job-{self._jobs_run:05}"  # a new one each time: paths never repeat
        folder.mkdir()
        saved: list[tuple[str, Path]] = []

        def listen(event: events.Event) -> None:
            if isinstance(event, events.FileSaved):
                saved.append((event.node_id, Path(event.path)))

        executor = Executor(self._registry, replace(self._paths, output_dir=folder), self._cache)
        task = Job.from_dict(job)
        result = run_job(executor, job_workflow(self._workflow, task, sweep_id), task.index,
                         cancel_event=self._cancel, on_event=listen, device=self.info.device, **self._models,
                         preview_every=0)
        return {"result": result.to_dict(), "files": pack_files(folder, saved)}

    def cancel(self) -> None:
        """Stop the running job at its next safe point, and every later one."""
        self._cancel.set()

    def close(self) -> None:
        """Delete the private folder (a worker that dies leaves it to the node's temporary folder)."""
        import shutil

        try:
            shutil.rmtree(self._root)
        except OSError as error:
            logger.warning("worker %s: could not delete its folder %s: %s", self.info.name, self._root, error)
