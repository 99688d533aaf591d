"""The editor's list of recently opened or saved workflows, kept in a small JSON file.

Newest first, without duplicates, at most ``limit`` entries; files that no longer exist are
dropped when the list is read. Written atomically; a missing or damaged file is an empty list.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from nodeflow.runtime.atomic import write_text_atomic

logger = logging.getLogger(__name__)


def default_recent_file() -> Path:
    """``$XDG_CONFIG_HOME/nodeflow/recent.json`` (``~/.config/nodeflow/recent.json``)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nodeflow" / "recent.json"


class RecentFiles:
    def __init__(self, file: Path, limit: int = 10) -> None:
        self.file, self.limit = Path(file), limit

    def paths(self) -> list[Path]:
        """The recent workflows that still exist, newest first."""
        try:
            entries = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            logger.warning("ignoring the recent-files list %s: %s", self.file, error)
            return []
        if not isinstance(entries, list):
            return []
        return [Path(entry) for entry in entries if isinstance(entry, str) and Path(entry).is_file()]

    def add(self, path: Path) -> list[Path]:
        """Put ``path`` first; returns the new list."""
        path = Path(path).resolve()
        entries = [path] + [entry for entry in self.paths() if entry.resolve() != path]
        self._write(entries[:self.limit])
        return entries[:self.limit]

    def clear(self) -> None:
        self._write([])

    def _write(self, entries: list[Path]) -> None:
        try:
            write_text_atomic(self.file, json.dumps([str(entry) for entry in entries], indent=1) + "\n")
        except OSError as error:  # the list is a convenience: never fail an open or a save for it
            logger.warning("cannot write the recent-files list %s: %s", self.file, error)
