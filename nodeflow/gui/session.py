"""The editor's session: which document is open, its files, and the recovery file's rules.

Owns the open ``Document`` (new, open, save), whether it has unsaved changes (and so the window's
title), the recent-files list, and this window's recovery file (see recovery.py: one per editor,
in the user's state folder) that keeps unsaved work across a crash:

* autosave: every ``AUTOSAVE_SECONDS``, unsaved changes not yet in the recovery file go there;
* closing (normally, by SIGTERM or by a crash): unsaved changes go to the recovery file unless the
  user chose to close without them; otherwise the file goes;
* an earlier editor's recovery file (an orphan) is offered at the start, whatever is opened; it is
  removed only when the user restores it (it opens as unsaved work without a file of its own,
  written to this window's recovery file first) or discards it.

No dearpygui here (not even lazily): the window (app.py) asks the questions and shows the
answers, and this module is tested without a display.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Callable

from nodeflow.engine.workflow import Workflow, save_workflow
from nodeflow.gui.document import Document
from nodeflow.gui.recent import RecentFiles
from nodeflow.gui.recovery import RecoveryFolder

logger = logging.getLogger(__name__)

AUTOSAVE_SECONDS = 5.0
APP_NAME = "nodeflow"


class Session:
    """The open document, the recent-files list and the recovery file of one editor window."""

    def __init__(self, document: Document, recovery: RecoveryFolder, recent: RecentFiles,
                 on_recent_changed: Callable[[list[Path]], None] | None = None) -> None:
        self.document = document
        self.recovery = recovery
        self.recovery_file = recovery.claim()  # this window's own
        self.recent = recent
        self.on_recent_changed = on_recent_changed or (lambda paths: None)  # the new list, newest first
        self.last_autosave = time.monotonic()
        self.recovered_revision: int | None = None  # the document revision in the recovery file
        self.offered: Path | None = None  # an earlier editor's recovery file awaiting an answer
        self.keep_recovery = True  # False once the user chose to close without the changes

    # ----- unsaved changes -------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Whether the document has changes not saved to its file."""
        return self.document.dirty

    @property
    def needs_file_name(self) -> bool:
        """Whether saving has to ask where to (the document has no file of its own yet)."""
        return self.document.path is None

    def window_title(self) -> str:
        """The file's name, marked "* " while there are unsaved changes."""
        name = self.document.path.name if self.document.path else "untitled"
        return f"{'* ' if self.dirty else ''}{name} - {APP_NAME}"

    # ----- files -----------------------------------------------------------------------------
    def new(self) -> Document:
        """An empty document (same node types) replaces the open one."""
        self.document = Document(self.document.registry)
        return self.document

    def open(self, path: Path, remember: bool = True) -> Document:
        """Open ``path`` in place of the current document, which stays if it cannot be read (the
        error is raised for the window to show). ``remember``: put it in the recent files."""
        self.document = Document.open(self.document.registry, path)
        if remember:
            self.remember(path)
        return self.document

    def open_workflow(self, workflow: Workflow) -> Document:
        """A copy of ``workflow`` (a past run's graph) replaces the open document, as work
        without a file of its own."""
        self.document = Document(self.document.registry, copy.deepcopy(workflow))
        return self.document

    def save(self, path: Path | None = None) -> Path:
        """Save to ``path`` (default: the document's file) and remember it; returns where it went.
        An ``OSError`` is raised for the window to show."""
        saved = self.document.save(path)
        self.remember(saved)
        return saved

    # ----- recent files ----------------------------------------------------------------------
    def recent_paths(self) -> list[Path]:
        return self.recent.paths()

    def remember(self, path: Path) -> None:
        """Put ``path`` first in the recent files."""
        self.on_recent_changed(self.recent.add(path))

    def clear_recent(self) -> None:
        self.recent.clear()
        self.on_recent_changed([])

    # ----- the recovery file -----------------------------------------------------------------
    def autosave(self, now: float) -> None:
        """Every few seconds (``now``: ``time.monotonic()``): unsaved changes not yet in the
        recovery file go there."""
        if now - self.last_autosave < AUTOSAVE_SECONDS:
            return
        self.last_autosave = now
        if self.dirty and self.document.revision != self.recovered_revision:
            self.write_recovery()

    def write_recovery(self) -> None:
        """The document, as it is, to the recovery file (a failure is logged: the work goes on)."""
        try:
            save_workflow(self.document.workflow, self.recovery_file)
            self.recovered_revision = self.document.revision
        except OSError:
            logger.exception("cannot write the recovery file %s", self.recovery_file)

    def close_without_changes(self) -> None:
        """The user chose to close without saving: the unsaved changes are not kept."""
        self.keep_recovery = False

    def end_session(self) -> None:
        """The window closes, normally or by a crash: unsaved changes go to the recovery file
        (offered at the next start) unless the user discarded them; otherwise the file goes. An
        offered earlier file that was not answered stays for the next start."""
        if self.dirty and self.keep_recovery:
            self.write_recovery()
        else:
            self.recovery_file.unlink(missing_ok=True)
        self.recovery.release(self.recovery_file)

    @property
    def recovery_offered(self) -> bool:
        return self.offered is not None

    def orphan_to_offer(self) -> Path | None:
        """The newest recovery file an earlier editor left (unsaved work), if any."""
        return next(iter(self.recovery.orphans()), None)

    def recovery_offer_shown(self, path: Path) -> None:
        """The user is being asked whether to restore ``path``, an earlier editor's file."""
        self.offered = path

    def recovery_restored(self) -> None:
        """The offered file was opened (``open(offered, remember=False)``): its work is unsaved
        and has no file of its own; it moves to this window's recovery file."""
        self.document.path = None
        self.document.dirty = True
        self.write_recovery()
        if self.recovered_revision == self.document.revision:  # safe in our own file first
            self.recovery.remove(self.offered)
        self.offered = None

    def discard_recovery(self) -> None:
        """The user does not want the earlier editor's unsaved work: its file goes."""
        if self.offered is not None:
            self.recovery.remove(self.offered)
        self.offered = None
