"""What the editor's file browser lists: a folder's entries, sorted, filtered and described.

No dearpygui here, so the rules are tested without a display (the window is file_browser.py):
".." comes first, then folders, then files, each sorted by name ascending ignoring case (as
people read names; dearpygui's own dialog sorted in reverse and listed ".." last); sizes in
1024-based units (B, KB, MB, GB, TB); files filtered by extension, ignoring case. A folder that
cannot be read gives a listing with only ".." and the reason, never an exception: the user can
always go back up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PARENT = ".."
SIZE_UNITS = ("KB", "MB", "GB", "TB")
DATE_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class FileFilter:
    """A choice in the browser's filter list: its label and the extensions it shows (none: all)."""

    label: str
    extensions: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        """Whether a file called ``name`` is shown under this filter (extension case ignored)."""
        return not self.extensions or name.lower().endswith(tuple(e.lower() for e in self.extensions))


WORKFLOWS = FileFilter("Workflows (.json, .png)", (".json", ".png"))
IMAGES = FileFilter("Images (.png, .jpg, .jpeg, .webp, .bmp)", (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
ALL_FILES = FileFilter("All files")


@dataclass(frozen=True)
class Entry:
    """One row of the listing. ``size`` and ``modified`` are None where the file cannot be
    examined (a broken link, no permission): the row is still shown."""

    name: str
    path: Path
    is_dir: bool
    size: int | None = None
    modified: float | None = None

    @property
    def is_parent(self) -> bool:
        return self.name == PARENT

    def size_text(self) -> str:
        return "" if self.is_dir or self.size is None else size_text(self.size)

    def date_text(self) -> str:
        return "" if self.modified is None or self.is_parent else date_text(self.modified)


@dataclass(frozen=True)
class Listing:
    """A folder's rows in display order, and why it could not be read (None when it could)."""

    folder: Path
    entries: list[Entry] = field(default_factory=list)
    error: str | None = None


def size_text(size: int) -> str:
    """A file size as people read it: "512 B", "1.5 KB", "3.0 MB" (1024-based)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable: the last unit returns")


def date_text(timestamp: float) -> str:
    """A modification time in local time, to the minute."""
    return datetime.fromtimestamp(timestamp).strftime(DATE_FORMAT)


def sort_key(name: str) -> tuple[str, str]:
    """Names in ascending order ignoring case; names differing only in case keep a fixed order."""
    return name.casefold(), name


def list_folder(folder: Path, file_filter: FileFilter = ALL_FILES, show_hidden: bool = False) -> Listing:
    """The rows of ``folder``: "..", its folders, then its files that ``file_filter`` shows.
    Names starting with "." are hidden unless ``show_hidden``."""
    folder = Path(folder)
    parent = [Entry(PARENT, folder.parent, True)] if folder.parent != folder else []
    try:
        with os.scandir(folder) as scanned:
            found = list(scanned)
    except OSError as error:  # no permission, gone, not a folder: shown, the user goes elsewhere
        return Listing(folder, parent, f"cannot read {folder}: {error.strerror or error}")
    folders, files = [], []
    for item in found:
        if item.name.startswith(".") and not show_hidden:
            continue
        entry = _entry(item)
        if entry.is_dir:
            folders.append(entry)
        elif file_filter.matches(entry.name):
            files.append(entry)
    by_name = lambda entry: sort_key(entry.name)  # noqa: E731
    return Listing(folder, parent + sorted(folders, key=by_name) + sorted(files, key=by_name))


def _entry(item: os.DirEntry) -> Entry:
    """A row for one directory entry; links are followed (a link to a folder is a folder)."""
    try:
        is_dir = item.is_dir()
    except OSError:
        is_dir = False
    try:
        stat = item.stat()
    except OSError:  # a broken link or no permission: listed without size and date
        return Entry(item.name, Path(item.path), is_dir)
    return Entry(item.name, Path(item.path), is_dir, None if is_dir else stat.st_size, stat.st_mtime)


def typed_path(folder: Path, text: str) -> Path:
    """Where a path typed in the browser's path or name box points: "~" expanded, a relative
    path taken from ``folder``."""
    path = Path(os.path.expanduser(text.strip()))
    return path if path.is_absolute() else Path(folder) / path


def save_name(name: str, extension: str = ".json") -> str:
    """The file name a Save writes: ``name`` with ``extension`` added unless it has it already
    (as dearpygui's dialog added the filter's extension)."""
    name = name.strip()
    return name if name.lower().endswith(extension.lower()) else name + extension
