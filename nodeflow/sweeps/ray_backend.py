"""Sweeps on a Ray cluster (``nodeflow run WF --sweep ... --ray [ADDRESS]``).

What runs where: the driver (the ``nodeflow`` process) plans the jobs, keeps the manifest, writes
every file and draws the grids, exactly as a local sweep does (``jobs``, ``manifest``, ``run``).
Each worker is a Ray actor (``ray_worker.SweepWorker``) holding a registry, an executor's cache and
the sweep's workflow, with one GPU when the cluster has GPUs; it runs one job at a time. Jobs that
share upstream work go to the same worker (``schedule``), so its cache serves them.

What goes over the wire: to each worker once, the workflow as JSON data and the settings
(``WorkerSettings``: shared model, input and custom-node folders when given, device, dtype); per
job, the job's values and the sweep's id; back, the job's record (``JobResult``) and its files'
bytes (``transfer``). Workers need no shared file system.

A job that fails is recorded (node and message) and the others go on; a worker that dies has its
running job (and the rest of its unit) run by another worker, at most ``MAX_ATTEMPTS`` times; a
cancel (Ctrl-C) stops the running jobs at their next safe point and keeps what finished.

Ray is an optional dependency, imported only here and only when a sweep asks for it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nodeflow.engine import events
from nodeflow.errors import ValidationError
from nodeflow.sweeps.jobs import Job
from nodeflow.sweeps.manifest import Manifest
from nodeflow.sweeps.ray_worker import SweepWorker, WorkerInfo, WorkerSettings
from nodeflow.sweeps.run import JobResult, SweepOutcome, finish_sweep
from nodeflow.sweeps.schedule import JobQueue, group_jobs, split_units
from nodeflow.sweeps.spec import SweepError
from nodeflow.sweeps.transfer import write_file

logger = logging.getLogger(__name__)

LOCAL = "local"  # --ray without an address: start a cluster on this machine
INSTALL_HINT = "pip install 'nodeflow[ray]'"
#: Ray keeps a local cluster on the loopback interface when this is "0" (read when ray is imported)
LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CONNECT_TIMEOUT_S = 5.0  # Ray itself retries an unreachable address for minutes
MAX_ATTEMPTS = 3  # runs of one job whose worker died, before the job is recorded as failed
POLL_S = 0.1  # how often the driver looks at Ctrl-C while jobs run

JobStarted = Callable[[Job, WorkerInfo], None]
JobFinished = Callable[[JobResult, WorkerInfo, int, int], None]  # result, worker, jobs finished, jobs to run


def import_ray():
    """The ``ray`` module; a ``SweepError`` naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError as error:
        raise SweepError(f"--ray needs Ray, an optional extra: {INSTALL_HINT} ({error})") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address (``HOST:PORT`` or ``ray://HOST:PORT``) where nothing answers: Ray would
    retry it for minutes. Names without a port (``auto``) are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise SweepError(f"--ray {address}: no Ray cluster answers there "
                         f"({error.strerror or type(error).__name__})") from None


@contextmanager
def connect(address: str = LOCAL) -> Iterator[Any]:
    """Ray, connected to the cluster at ``address`` (``LOCAL``: a new cluster on this machine,
    on 127.0.0.1 only), disconnected (and a local cluster stopped) at the end. A process connected
    already (a test, a notebook) keeps its connection when ``address`` names that cluster."""
    if address == LOCAL:
        os.environ.setdefault(LOOPBACK_VARIABLE, "0")  # before ray is imported: see LOOPBACK_VARIABLE
    else:
        check_reachable(address)
    ray = import_ray()
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (current, "auto"):
            raise SweepError(f"--ray {address}: this process is connected to the Ray cluster at {current}")
        yield ray
        return
    options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    if address == LOCAL:
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        context = ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SweepError(f"--ray {address}: cannot connect: {first_line(error)}") from None
    info = getattr(context, "address_info", {})
    logger.info("connected to the Ray cluster at %s", info.get("address", address))
    if address == LOCAL and info.get("node_ip_address") != "127.0.0.1":
        logger.warning("the local Ray cluster listens on %s, not on 127.0.0.1 only (ray was imported before "
                       "nodeflow could set %s=0)", info.get("node_ip_address"), LOOPBACK_VARIABLE)
    try:
        yield ray
    finally:
        ray.shutdown()


def first_line(error: BaseException) -> str:
    """An exception's message on one line (Ray's carry tracebacks): its last non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def default_worker_count(ray) -> int:
    """One worker per GPU of the cluster; on a cluster without GPUs, one per node."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return gpus or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def worker_room(ray) -> int:
    """How many workers the cluster can hold at once: one per GPU, else one per CPU."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))


def value_sets_to_check(jobs: list[Job]) -> list[dict[str, Any]]:
    """The first job's values, and each other value of each swept input on top of them: every
    value is checked once, not every combination."""
    first = jobs[0].values
    sets = {repr(sorted(first.items())): dict(first)}
    for job in jobs[1:]:
        for key, value in job.values.items():
            values = {**first, key: value}
            sets.setdefault(repr(sorted(values.items())), values)
    return list(sets.values())


@dataclass
class _Worker:
    actor: Any
    info: WorkerInfo


class RayPool:
    """Sweep workers on a Ray cluster: started by ``open_pool``, they check the workflow on their
    own models (``check``) and run a manifest's jobs (``run``)."""

    def __init__(self, ray, workers: dict[str, _Worker]) -> None:
        self.ray = ray
        self.workers = workers

    @classmethod
    def start(cls, ray, settings: WorkerSettings, count: int) -> RayPool:
        """``count`` workers; those that fail to start are logged and left out (none: SweepError)."""
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        actor_class = ray.remote(SweepWorker).options(
            num_cpus=1, num_gpus=gpus, max_concurrency=2, max_restarts=0, scheduling_strategy="SPREAD")
        actors = {f"w{n}": actor_class.remote(f"w{n}", settings) for n in range(1, count + 1)}
        workers, failures = {}, []
        for name, actor in actors.items():
            try:
                workers[name] = _Worker(actor, ray.get(actor.describe.remote()))
            except ray.exceptions.RayError as error:
                logger.debug("worker %s did not start", name, exc_info=True)
                failures.append(f"worker {name}: {first_line(error)}")
        for failure in failures:
            logger.warning("%s", failure)
        if not workers:
            raise SweepError(f"no Ray worker started: {failures[0]}")
        return cls(ray, workers)

    def describe(self) -> list[WorkerInfo]:
        return [worker.info for worker in self.workers.values()]

    def check(self, value_sets: list[dict[str, Any]]) -> list[str]:
        """Problems of the workflow with each set of values, on every worker's models and packs."""
        try:
            answers = self.ray.get([w.actor.check.remote(value_sets) for w in self.workers.values()])
        except self.ray.exceptions.RayError as error:
            raise SweepError(f"a Ray worker failed while checking the workflow: {first_line(error)}") from error
        problems: dict[str, None] = {}
        for info, found in zip(self.describe(), answers):
            problems.update(dict.fromkeys(f"on worker {info.name} ({info.host}): {p}" for p in found))
        return list(problems)

    def run(self, workflow, registry, manifest: Manifest, *, cancel_event: threading.Event | None = None,
            on_event: Callable[[events.Event], None] | None = None, on_job_started: JobStarted | None = None,
            on_job_finished: JobFinished | None = None, font_path: Path | None = None) -> SweepOutcome:
        """Run the manifest's jobs that are not done on the workers, then draw the grids (also
        after a cancel: of what finished). Raises ``SweepError`` when every worker died first."""
        started = time.perf_counter()
        skipped = [entry["index"] for entry in manifest.jobs if entry["status"] == "done"]
        jobs = [Job.from_dict(entry) for entry in manifest.jobs if entry["status"] != "done"]
        groups = group_jobs(jobs, manifest.data["axes"], workflow, registry)
        dispatch = _Dispatch(self, manifest, jobs, JobQueue(split_units(groups, len(self.workers))),
                             on_event, on_job_started, on_job_finished)
        cancelled = dispatch.loop(cancel_event or threading.Event())
        grids = finish_sweep(manifest, font_path)
        left = dispatch.queue.remaining()
        if left and not cancelled:
            raise SweepError(f"every Ray worker died; {len(left)} of {len(manifest.jobs)} jobs did not run: "
                             f"continue with --resume {manifest.path}")
        results = [dispatch.results[index] for index in sorted(dispatch.results)]
        return SweepOutcome(results, skipped, grids, cancelled, time.perf_counter() - started)

    def close(self) -> None:
        """Let the workers delete their folders, then end them."""
        closing = [w.actor.close.remote() for w in self.workers.values()]
        ready, _ = self.ray.wait(closing, num_returns=len(closing), timeout=30)
        for ref in ready:
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayError as error:  # a worker that died meanwhile
                logger.debug("a worker did not close: %s", first_line(error))
        for worker in self.workers.values():
            self.ray.kill(worker.actor, no_restart=True)


@contextmanager
def open_pool(address: str, settings: WorkerSettings, workers: int | None, jobs: list[Job],
              on_started: Callable[[list[WorkerInfo]], None] | None = None) -> Iterator[RayPool]:
    """Connect (``connect``), start ``workers`` sweep workers (default: ``default_worker_count``;
    never more than the ``jobs``) and have them check the jobs' values on their own models
    (``ValidationError`` when one cannot run there); at the end, end them and the connection."""
    with connect(address) as ray:
        wanted, room = workers or default_worker_count(ray), worker_room(ray)
        if wanted > room:
            logger.warning("%d workers asked for; the cluster holds %d (one per GPU, else per CPU)", wanted, room)
        count = min(wanted, room, max(1, len(jobs)))
        pool = RayPool.start(ray, settings, count)
        try:
            if on_started is not None:
                on_started(pool.describe())
            problems = pool.check(value_sets_to_check(jobs)) if jobs else []
            if problems:
                raise ValidationError(problems)
            yield pool
        finally:
            pool.close()


class _Dispatch:
    """One run of a pool over a manifest's jobs: hands jobs to idle workers, collects results,
    writes their files, records them (see ``RayPool.run``)."""

    def __init__(self, pool: RayPool, manifest: Manifest, jobs: list[Job], queue: JobQueue,
                 on_event, on_job_started, on_job_finished) -> None:
        self.ray = pool.ray
        self.live = dict(pool.workers)  # name -> _Worker; the dead are removed
        self.idle = list(self.live)
        self.manifest = manifest
        self.jobs = {job.index: job for job in jobs}
        self.queue = queue
        self.on_event = on_event or (lambda event: None)
        self.on_job_started = on_job_started or (lambda job, worker: None)
        self.on_job_finished = on_job_finished or (lambda result, worker, finished, total: None)
        self.in_flight: dict[Any, tuple[str, Job]] = {}  # object ref -> (worker, job)
        self.attempts: Counter[int] = Counter()
        self.results: dict[int, JobResult] = {}
        self.written: dict[str, str] = {}  # a worker's path of a file -> where the driver wrote it

    def loop(self, cancel_event: threading.Event) -> bool:
        """Until every job is recorded (or every worker is gone); True when cancelled."""
        cancelling = False
        while True:
            if cancel_event.is_set() and not cancelling:
                cancelling = True
                self._cancel_running()
            if not cancelling:
                self._hand_out()
            if not self.in_flight:
                return cancelling
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self._collect(ref)

    def _hand_out(self) -> None:
        for name in list(self.idle):
            index = self.queue.next_job(name)
            if index is None:
                continue
            job, worker = self.jobs[index], self.live[name]
            self.idle.remove(name)
            self.attempts[index] += 1
            self.manifest.start(index)
            self.in_flight[worker.actor.run.remote(job.to_dict(), self.manifest.id)] = (name, job)
            self.on_job_started(job, worker.info)

    def _cancel_running(self) -> None:
        for name in {name for name, _ in self.in_flight.values()}:
            self.live[name].actor.cancel.remote()  # a worker that died meanwhile: its job's ref says so

    def _collect(self, ref) -> None:
        name, job = self.in_flight.pop(ref)
        try:
            payload = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as error:
            self._worker_lost(name, job, error)
            return
        except self.ray.exceptions.RayTaskError as error:  # a bug in the worker's code: this job fails
            logger.error("worker %s failed running job %d: %s", name, job.index, error)
            result = JobResult(job.index, "failed", error=f"worker {name}: {first_line(error)}", bug=True)
        else:
            result = self._store(payload)
        self.idle.append(name)
        self._record(result, self.live[name].info)

    def _store(self, payload: dict[str, Any]) -> JobResult:
        """Write a job's files into the output folder; its result with the driver's paths."""
        result = JobResult(**payload["result"])
        files = []
        for shipped in payload["files"]:
            try:
                path = write_file(shipped, self.manifest.output_dir)
            except (OSError, ValueError) as error:
                return replace(result, status="failed", files=files, error=f"cannot save {shipped.relative}: {error}")
            self.written[shipped.source] = str(path)
            files.append(str(path))
            self.on_event(events.FileSaved(shipped.node_id, path))
        missing = [path for path in result.reused if path not in self.written]
        if missing:
            logger.warning("job %d shows images this sweep did not write here: %s", result.index, missing)
        reused = [self.written[path] for path in result.reused if path in self.written]
        return replace(result, files=files, reused=reused)

    def _record(self, result: JobResult, worker: WorkerInfo) -> None:
        self.results[result.index] = result
        self.manifest.finish(result.index, {**result.to_dict(), "worker": worker.name})
        self.on_job_finished(result, worker, len(self.results), len(self.jobs))

    def _worker_lost(self, name: str, job: Job, error: BaseException) -> None:
        """A worker died (or its node did): its job and the rest of its unit go to the others."""
        worker = self.live.pop(name)
        if name in self.idle:
            self.idle.remove(name)
        tries = self.attempts[job.index]
        logger.warning("worker %s died running job %d (try %d of %d): %s", worker.info, job.index, tries,
                       MAX_ATTEMPTS, first_line(error))
        if tries >= MAX_ATTEMPTS:
            self.queue.give_back(name, [])
            self._record(JobResult(job.index, "failed", bug=True, error=(
                f"its worker died {tries} times running it (last: {first_line(error)})")), worker.info)
        else:
            self.manifest.reset(job.index)
            self.queue.give_back(name, [job.index])
