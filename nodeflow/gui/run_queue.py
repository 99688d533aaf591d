"""The editor's run queue: Run adds runs, the worker takes them one at a time.

Each queued run holds a snapshot of the graph as it was when it was queued, with its seeds. As in
ComfyUI, each seed's "control after generate" (fixed / increment / decrement / randomize, see
seed_control.py) is applied to the document right after a run is queued, so a batch of three
queues three graphs that differ only in their seeds, and the seed widgets show the next value.

No dearpygui here: the window (app.py) starts the runs and shows the queue; this module is tested
without a display.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from dataclasses import dataclass
from typing import Callable

from nodeflow.engine.workflow import Workflow
from nodeflow.gui.seed_control import seeds_after_run
from nodeflow.sweeps.seeds import seed_inputs

MAX_BATCH = 100  # at most this many runs are queued by one press of Run


@dataclass(frozen=True)
class QueuedRun:
    """One run waiting (or going): the graph to run and its seeds ("NODE.INPUT" -> seed)."""

    number: int  # 1, 2, ... in the order the runs were queued in this window
    workflow: Workflow
    seeds: dict[str, int]


def run_seeds(workflow: Workflow, registry) -> dict[str, int]:
    """The seed values a run of ``workflow`` uses: its seed widgets' values ("NODE.INPUT" -> seed)."""
    seeds = {}
    for node_id, input_name in seed_inputs(workflow, registry):
        default = registry.specs[workflow.nodes[node_id].type].input(input_name).default
        seeds[f"{node_id}.{input_name}"] = int(workflow.nodes[node_id].inputs.get(input_name, default or 0))
    return seeds


class RunQueue:
    """The runs waiting, oldest first, and the one going (at most one)."""

    def __init__(self) -> None:
        self.pending: deque[QueuedRun] = deque()
        self.current: QueuedRun | None = None
        self.queued_total = 0  # runs queued so far: numbers the next one

    def enqueue(self, document, count: int = 1, rng: random.Random | None = None) -> list[QueuedRun]:
        """Queue ``count`` runs of ``document``'s graph (1..MAX_BATCH); after each, its seeds move
        on as their modes say (document commands, so undoable). Returns the runs queued."""
        if not 1 <= count <= MAX_BATCH:
            raise ValueError(f"batch count must be 1 to {MAX_BATCH}, not {count}")
        runs = []
        for _ in range(count):
            snapshot = copy.deepcopy(document.workflow)
            self.queued_total += 1
            runs.append(QueuedRun(self.queued_total, snapshot, run_seeds(snapshot, document.registry)))
            seeds_after_run(document, rng)
        self.pending.extend(runs)
        return runs

    def start_next(self, start: Callable[[Workflow], bool]) -> QueuedRun | None:
        """Start the oldest waiting run with ``start`` (the worker's: False when it is busy) if
        none is going; returns the run started, or None."""
        if self.current is not None or not self.pending or not start(self.pending[0].workflow):
            return None
        self.current = self.pending.popleft()
        return self.current

    def finish(self) -> QueuedRun | None:
        """The run going has ended (done, failed or cancelled); returns it."""
        finished, self.current = self.current, None
        return finished

    def clear(self) -> int:
        """Forget the waiting runs (the one going goes on); returns how many there were."""
        count = len(self.pending)
        self.pending.clear()
        return count

    @property
    def busy(self) -> bool:
        """Whether a run is going or waiting."""
        return self.current is not None or bool(self.pending)

    def status(self) -> str:
        """What the status bar says: "running 1, queued N" (empty when nothing is going)."""
        if not self.busy:
            return ""
        return f"running {int(self.current is not None)}, queued {len(self.pending)}"
