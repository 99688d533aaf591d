"""Runs workflows on a background thread; events go to a queue the GUI drains each frame.

dearpygui is only touched from the GUI thread: the worker never calls it.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from dataclasses import dataclass

from nodeflow.errors import Cancelled, NodeflowError, ValidationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFailed:
    message: str
    node_id: str | None = None


@dataclass(frozen=True)
class RunCancelled:
    pass


@dataclass(frozen=True)
class RunInvalid:
    """Validation refused the workflow; each problem names its node (shown on the node)."""

    problems: tuple


class RunProgress:
    """What the progress bar says: the running node with its place in the run, and its step
    once it reports steps ("KSampler (3/7) step 12/20"); the bar fills per node, then per step."""

    def __init__(self, label=None) -> None:
        self.label = label or (lambda node_id, node_type: node_type)  # a node's name for people
        self.node = ""

    def node_started(self, node_id: str, node_type: str, index: int, total: int) -> tuple[float, str]:
        self.node = f"{self.label(node_id, node_type)} ({index}/{total})"
        return (index - 1) / max(total, 1), self.node

    def step(self, step: int, total: int) -> tuple[float, str]:
        return step / max(total, 1), f"{self.node} step {step}/{total}".strip()


class Worker:
    def __init__(self, executor, preview_every: int = 1, **run_options) -> None:
        """``run_options``: Executor.run's device, dtype, compile and vram for every run."""
        self.executor, self.run_options = executor, run_options
        self.preview_every = preview_every
        self.events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, workflow) -> bool:
        """Run a snapshot of ``workflow``; False when a run is already going."""
        if self.busy:
            return False
        snapshot = copy.deepcopy(workflow)
        return self._start(lambda: self.executor.run(snapshot, **self.run_options, on_event=self.events.put,
                                                     cancel_event=self._cancel, preview_every=self.preview_every),
                           "nodeflow-run")

    def start_task(self, task) -> bool:
        """Run ``task(cancel_event, post)`` on the worker's thread instead of one run (a sweep:
        sweep_job.py); ``post`` queues an event for the window. False when a run is already going."""
        return not self.busy and self._start(lambda: task(self._cancel, self.events.put), "nodeflow-task")

    def stop(self) -> None:
        self._cancel.set()

    def _start(self, work, name: str) -> bool:
        self._cancel.clear()
        self._thread = threading.Thread(target=self._guarded, args=(work,), name=name, daemon=True)
        self._thread.start()
        return True

    def _guarded(self, work) -> None:
        """Run ``work()``; how it ended, if not normally, becomes an event for the window."""
        try:
            work()
        except Cancelled:
            self.events.put(RunCancelled())
        except ValidationError as error:
            self.events.put(RunInvalid(tuple(error.problems)))
        except NodeflowError as error:
            self.events.put(RunFailed(str(error), getattr(error, "node_id", None)))
        except Exception as error:  # a bug: keep the window alive and show it
            logger.exception("the worker's run failed")
            self.events.put(RunFailed(f"{type(error).__name__}: {error}"))

    def drain(self, limit: int = 200) -> list:
        items = []
        while len(items) < limit:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        return items

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
