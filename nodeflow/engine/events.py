"""What a run reports while it goes: plain event records delivered to a callback.

The CLI prints them; the GUI's worker thread puts them on a queue that the frame loop drains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """A run begins: ``node_ids`` will be run or taken from the cache, in this order."""

    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class NodeStarted:
    node_id: str
    node_type: str
    index: int  # 1-based position among the nodes this run executes
    total: int


@dataclass(frozen=True)
class NodeCached:
    """The node's outputs came from the cache; it did not run."""

    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeFinished:
    node_id: str
    node_type: str
    seconds: float


@dataclass(frozen=True)
class Progress:
    """Step ``step`` of ``total`` inside a node (a sampler's steps); ``preview`` an IMAGE or None."""

    node_id: str
    step: int
    total: int
    preview: Any = None


@dataclass(frozen=True)
class ImagesShown:
    """Images (IMAGE tensor [B,H,W,C]) a node hands to the GUI (PreviewImage, SaveImage)."""

    node_id: str
    images: Any
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class TextShown:
    """Text a node shows (PreviewAny: any value as text); the CLI prints it."""

    node_id: str
    text: str


@dataclass(frozen=True)
class FileSaved:
    node_id: str
    path: Path


@dataclass(frozen=True)
class NodeFailed:
    node_id: str
    node_type: str
    message: str


@dataclass(frozen=True)
class RunFinished:
    executed: tuple[str, ...]
    cached: tuple[str, ...]
    seconds: float


Event = (RunStarted | NodeStarted | NodeCached | NodeFinished | Progress | ImagesShown | TextShown
         | FileSaved | NodeFailed | RunFinished)
