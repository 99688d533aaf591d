"""The runs this window finished: what each left (first image, seeds, time, status) and its graph.

``RunRecorder`` watches one run's events and, on its last one, makes a ``HistoryEntry``;
``History`` keeps the newest ``MAX_ENTRIES`` of them, newest first. An entry's graph is read
back from the PNG its run saved (the workflow embedded in the image: so a PNG of any earlier
session reopens the same way), or, for a run that saved none (failed, cancelled), from the
snapshot the queue kept.

No dearpygui here: history_panel.py draws the entries; this module is tested without a display.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nodeflow.engine import events
from nodeflow.engine.workflow import Workflow
from nodeflow.errors import NodeflowError
from nodeflow.formats import load_workflow
from nodeflow.gui.run_queue import QueuedRun
from nodeflow.gui.worker import RunCancelled, RunFailed, RunInvalid

logger = logging.getLogger(__name__)

MAX_ENTRIES = 100
THUMBNAIL_SIZE = 96  # a thumbnail's longer side, in pixels


@dataclass(frozen=True, eq=False)
class HistoryEntry:
    """One finished run."""

    number: int  # the queued run's number
    seeds: dict[str, int]  # "NODE.INPUT" -> seed
    seconds: float  # from its start to its end
    status: str  # "done", "failed" or "cancelled"
    message: str = ""  # why it failed
    saved: Path | None = None  # the first PNG it saved (holds its workflow)
    image_file: Path | None = None  # the first image it showed (saved, or a preview's file)
    thumbnail: np.ndarray | None = None  # (h, w, 4) float32 RGBA in 0..1, at most THUMBNAIL_SIZE
    workflow: Workflow | None = None  # the graph queued: for runs that saved no PNG

    def seeds_text(self) -> str:
        """"seed 123", or "3.seed 1, 10.noise_seed 2" for several; "no seed" without one."""
        if not self.seeds:
            return "no seed"
        if len(self.seeds) == 1:
            return f"seed {next(iter(self.seeds.values()))}"
        return ", ".join(f"{key} {value}" for key, value in self.seeds.items())

    def summary(self) -> str:
        """"#2 done in 0.5 s" (failed / cancelled likewise)."""
        return f"#{self.number} {self.status} in {self.seconds:.1f} s"

    def load_workflow(self, registry) -> Workflow:
        """The exact graph that made this run: the one in its saved PNG, else the snapshot kept.
        Raises NodeflowError (with the file's name) when neither can be had."""
        if self.saved is not None:
            return load_workflow(self.saved, registry)
        if self.workflow is None:
            raise NodeflowError(f"run #{self.number} saved no image and kept no graph")
        return self.workflow


def thumbnail(image, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """``image`` (an IMAGE's [H, W, C] tensor or array in 0..1) shrunk to at most ``size``
    pixels a side, as float32 RGBA (H', W', 4) for a texture."""
    if hasattr(image, "detach"):  # a tensor (not imported here: the editor runs without torch)
        image = image.detach().cpu().float().numpy()
    array = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if array.ndim == 2:
        array = array[..., None]
    rgb = np.repeat(array[..., :1], 3, axis=2) if array.shape[2] == 1 else array[..., :3]
    picture = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    picture.thumbnail((size, size), Image.BILINEAR)
    return rgba(picture)


def rgba(picture: Image.Image) -> np.ndarray:
    """A PIL image as float32 RGBA (H, W, 4) in 0..1, as dearpygui's textures take it."""
    return np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0


class RunRecorder:
    """Watches one run's events and makes its history entry when the run ends."""

    def __init__(self, run: QueuedRun, started: float) -> None:
        self.run, self.started = run, started
        self.saved: Path | None = None
        self.image_file: Path | None = None
        self.thumbnail: np.ndarray | None = None

    def observe(self, event, now: float) -> HistoryEntry | None:
        """Note what ``event`` shows; the run's entry when it is its last event, else None."""
        if isinstance(event, events.FileSaved) and self.saved is None and event.path.suffix.lower() == ".png":
            self.saved = event.path
        elif isinstance(event, events.ImagesShown) and self.thumbnail is None and len(event.images):
            self.thumbnail = thumbnail(event.images[0])
            self.image_file = event.files[0] if event.files else None
        ending = _ending(event)
        if ending is None:
            return None
        status, message = ending
        return HistoryEntry(self.run.number, dict(self.run.seeds), now - self.started, status, message,
                            self.saved, self.image_file or self.saved, self.thumbnail, self.run.workflow)


def _ending(event) -> tuple[str, str] | None:
    """(status, message) when ``event`` ends a run, else None."""
    if isinstance(event, events.RunFinished):
        return "done", ""
    if isinstance(event, RunFailed):
        return "failed", event.message
    if isinstance(event, RunInvalid):
        return "failed", "; ".join(str(problem) for problem in event.problems)
    if isinstance(event, RunCancelled):
        return "cancelled", ""
    return None


class History:
    """The finished runs, newest first, at most ``limit`` of them."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self.limit = limit
        self.entries: list[HistoryEntry] = []

    def add(self, entry: HistoryEntry) -> list[HistoryEntry]:
        """Put ``entry`` first; returns the oldest entries dropped to stay within the limit."""
        self.entries.insert(0, entry)
        dropped, self.entries = self.entries[self.limit:], self.entries[:self.limit]
        return dropped

    def find(self, number: int) -> HistoryEntry | None:
        return next((entry for entry in self.entries if entry.number == number), None)

    def __len__(self) -> int:
        return len(self.entries)
