"""RunContext: the runtime services a node receives through its ``ctx`` parameter.

No globals: device, dtype, folders, progress reporting, cancellation and image hand-off all come
through this object, created by the executor for each node it runs. Output nodes also find the
run's provenance here (the workflow and model files to record in what they save).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nodeflow.engine import events
from nodeflow.engine.provenance import Provenance
from nodeflow.errors import Cancelled
from nodeflow.runtime.paths import Paths


def _ignore(event: events.Event) -> None:
    return None


@dataclass
class RunContext:
    """Services for one node of one run."""

    device: str = "cpu"
    dtype: str = "auto"
    compile: bool = False  # --compile: the loaders compile the U-Net (torch.compile)
    vram: str = "auto"  # --vram: auto, low, normal or high (nodeflow.runtime.vram)
    paths: Paths = field(default_factory=Paths)
    node_id: str = ""
    provenance: Provenance | None = None  # output nodes only: what made the run (see provenance)
    on_event: Callable[[events.Event], None] = _ignore
    cancel_event: threading.Event = field(default_factory=threading.Event)
    preview_every: int = 1  # steps between live previews of long nodes (0: none)

    def for_node(self, node_id: str, provenance: Provenance | None = None) -> RunContext:
        """The same services, reporting as ``node_id`` (an output node also gets ``provenance``)."""
        return replace(self, node_id=node_id, provenance=provenance)

    def wants_preview(self, step: int, total: int) -> bool:
        """Whether step ``step`` (1-based) of ``total`` should carry a preview."""
        return self.preview_every > 0 and (step % self.preview_every == 0 or step == total)

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report step ``step`` of ``total``; also the point where a cancel takes effect."""
        self.on_event(events.Progress(self.node_id, step, total, preview))
        self.check_cancel()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    def file_saved(self, path: Path) -> None:
        self.on_event(events.FileSaved(self.node_id, Path(path)))

    def show_images(self, images: Any, files: tuple[Path, ...] = ()) -> None:
        self.on_event(events.ImagesShown(self.node_id, images, tuple(files)))
