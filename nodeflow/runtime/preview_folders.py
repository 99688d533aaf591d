"""Preview images are temporary: each CLI run or editor session writes them into a folder of its
own under ``temp_dir/previews``, removed when the session ends. Folders and files left there by
sessions that crashed are removed by the next session once they are an hour old."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from nodeflow.errors import NodeflowError
from nodeflow.runtime.paths import Paths

logger = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0


@contextmanager
def preview_session(paths: Paths) -> Iterator[Paths]:
    """``paths`` with a fresh ``previews_dir``; the folder and its previews go at exit."""
    root = private_folder(private_folder(paths.temp_dir) / "previews")
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
            if entry.is_symlink() or entry.lstat().st_mtime >= limit:
                continue  # never follow a link: it was not made by us
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("preview_"):
                entry.unlink()
        except FileNotFoundError:  # removed by a concurrent session
            pass


def private_folder(folder: Path) -> Path:
    """``folder``, made if missing with mode 0700; refused (NodeflowError) when it is a symbolic
    link or belongs to another user, since sessions delete old files in it and a folder planted
    by someone else would turn that against their chosen target. Returns ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise NodeflowError(f"{folder}: not a folder of ours (a symbolic link or a file); remove it or set TMPDIR")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise NodeflowError(f"{folder}: belongs to another user; remove it or set TMPDIR")
    if info.st_mode & 0o077:
        folder.chmod(0o700)
    return folder
