"""Empty Latent Image at the loaded model's own size: what the graph's checkpoints tell.

ComfyUI's Empty Latent Image defaults to 512 x 512, which suits SD1 only: the embedded models are
64 px, SD2-v 768, SDXL 1024. The editor keeps that default but, when the graph's model loaders
name files whose native size is known, offers it in the node's menu ("Model's size: W x H") and
gives it to a newly added Empty Latent Image when the graph's checkpoints agree on one size.

How a file's size is found is the loading layer's (nodeflow.loading.native_size), which the
editor may not import (the "gui-edits-graphs" contract): the window's caller passes that function
in as ``read_size``. Each file is read once per size and modification time (a header read).
No dearpygui here: tested without a display.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from nodeflow.engine.provenance import Provenance

logger = logging.getLogger(__name__)

#: Node types whose width and height are an image's size in pixels, for a model to sample.
LATENT_SIZE_TYPES = ("EmptyLatentImage",)
#: Model file kinds whose files are diffusion models (a size to tell), as their loaders declare them.
MODEL_KINDS = ("checkpoints", "diffusion_models")

Size = tuple[int, int]
ReadSize = Callable[[Path], "Size | None"]


class NativeSizes:
    """The native sizes of the model files a graph's loaders name, read through ``read_size``
    (None: never known) and remembered per file (path, size and modification time)."""

    def __init__(self, read_size: ReadSize | None, paths) -> None:
        self.read_size, self.paths = read_size, paths
        self.known: dict[tuple[str, int, int], Size | None] = {}

    def in_graph(self, workflow, registry) -> list[Size]:
        """The distinct native sizes the graph's model loaders tell, in node order."""
        sizes: list[Size] = []
        for path in self._model_files(workflow, registry):
            size = self.of_file(path)
            if size is not None and size not in sizes:
                sizes.append(size)
        return sizes

    def new_node_values(self, workflow, registry, type_id: str) -> dict[str, int]:
        """Values a new node of ``type_id`` takes over its declared defaults: an Empty Latent
        Image the model's size when the graph's checkpoints tell exactly one (else nothing:
        ComfyUI's 512 stays)."""
        if type_id not in LATENT_SIZE_TYPES:
            return {}
        sizes = self.in_graph(workflow, registry)
        return size_values(sizes[0]) if len(sizes) == 1 else {}

    def of_file(self, path: Path) -> Size | None:
        """One file's native size (read once while the file is unchanged); None when unknown or
        unreadable (a corrupt file is logged: the loader node reports it when run)."""
        if self.read_size is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self.known:
            try:
                self.known[key] = self.read_size(path)
            except Exception as error:  # an odd file must not break a menu: its size is just unknown
                logger.warning("cannot read the native size of %s: %s", path, error)
                self.known[key] = None
        return self.known[key]

    def _model_files(self, workflow, registry) -> list[Path]:
        """The files the graph's diffusion model loaders name (those that exist; muted or
        bypassed loaders too: they still tell the model the graph is for)."""
        uses = Provenance.of(workflow, registry, self.paths, node_ids=list(workflow.nodes)).model_files
        return [use.path for use in uses if use.kind in MODEL_KINDS]


def size_values(size: Size) -> dict[str, int]:
    """An Empty Latent Image's inputs for ``size``."""
    return {"width": size[0], "height": size[1]}


def size_label(size: Size) -> str:
    """The node menu's entry for ``size``."""
    return f"Model's size: {size[0]} x {size[1]}"
