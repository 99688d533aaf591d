"""Recovery files: each editor window keeps its unsaved work in a file of its own, in the user's
state folder (``$XDG_STATE_HOME/nodeflow/recovery``, ``~/.local/state/nodeflow/recovery``), not in
a temporary folder that the system cleans.

A running editor holds a lock (``flock``) on its file's ``.lock`` companion; the lock goes with
the process, also when it is killed (``kill -9``) or crashes. Files whose lock nobody holds are
orphans: an earlier editor's unsaved work, offered when an editor starts (with or without a
workflow to open) and never deleted until the user restores or discards it. Concurrent editors
never share a file. No dearpygui here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def default_recovery_dir() -> Path:
    """``$XDG_STATE_HOME/nodeflow/recovery`` (``~/.local/state/nodeflow/recovery``)."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "nodeflow" / "recovery"


class RecoveryFolder:
    """The recovery files of every editor of this user."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._held: dict[Path, int] = {}  # our files -> their open, locked .lock descriptors

    def claim(self) -> Path:
        """A new recovery file for this editor (not written yet), locked while the process lives."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            path = self.folder / f"unsaved-{stamp}-{os.getpid()}-{os.urandom(3).hex()}.json"
            try:
                handle = os.open(_lock_of(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._held[path] = handle
            return path

    def release(self, path: Path) -> None:
        """This editor is done with ``path``: its lock goes, and so does the file unless it holds
        work (then it is an orphan, offered next time)."""
        handle = self._held.pop(path, None)
        try:
            if not path.exists():
                _lock_of(path).unlink(missing_ok=True)
        except OSError as error:  # the folder went away or became a file: nothing to keep
            logger.warning("recovery: cannot tidy %s: %s", path, error)
        if handle is not None:
            os.close(handle)

    def orphans(self) -> list[Path]:
        """Recovery files no running editor holds, newest first."""
        if not self.folder.is_dir():
            return []
        found = [path for path in self.folder.glob("unsaved-*.json")
                 if path not in self._held and not _locked(_lock_of(path))]
        return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)

    def remove(self, path: Path) -> None:
        """An orphan the user restored or discarded."""
        path.unlink(missing_ok=True)
        _lock_of(path).unlink(missing_ok=True)


def _lock_of(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _locked(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (a missing lock file: nobody)."""
    try:
        handle = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
