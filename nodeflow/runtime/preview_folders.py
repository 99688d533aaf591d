"""Preview images are temporary: each CLI run or editor session writes them into a folder of its
own under ``temp_dir/previews``, removed when the session ends. Folders and files left there by
sessions that crashed are removed by the next session once they are an hour old."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from nodeflow.runtime.paths import Paths

logger = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0


@contextmanager
def preview_session(paths: Paths) -> Iterator[Paths]:
    """``paths`` with a fresh ``previews_dir``; the folder and its previews go at exit."""
    root = paths.temp_dir / "previews"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
    try:
        yield replace(paths, previews_dir=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(root: Path, now: float | None = None) -> None:
    """Delete what earlier sessions left in ``root`` (previews and session folders) that is older
    than STALE_AFTER_S."""
    limit = (now or time.time()) - STALE_AFTER_S
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime >= limit:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("preview_"):
                entry.unlink()
        except FileNotFoundError:  # removed by a concurrent session
            pass
