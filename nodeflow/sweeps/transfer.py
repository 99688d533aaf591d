"""A job's files on their way from a Ray worker to the driver, so that workers need no shared
file system: the worker saves into a private folder, reads the files back (``pack_files``) and
deletes them; the driver writes each one into its own output folder (``write_file``) under the
name the local run would give it: same sub-folder and prefix, the next free counter, never
overwriting. The bytes are the worker's PNG as saved, metadata (workflow, ``sweep`` chunk) included.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: ``PREFIX_00001_.png``: what the savers write (nodeflow.image.files.save_numbered)
NUMBERED = re.compile(r"(?P<name>.*)_(?P<counter>\d{5,})_(?P<suffix>\.[^./]*)")


@dataclass(frozen=True)
class ShippedFile:
    """One file a job saved: the node that saved it, its path on the worker (what the job's result
    names), its path under the worker's output folder (POSIX), and its bytes."""

    node_id: str
    source: str
    relative: str
    data: bytes


def pack_files(root: Path, saved: list[tuple[str, Path]]) -> list[ShippedFile]:
    """The files a job saved under ``root`` (``(node id, path)`` each), read back; then ``root``
    is deleted. A file outside ``root`` is a ``ValueError`` (a saver that ignored the folder)."""
    shipped = []
    for node_id, path in saved:
        relative = Path(path).resolve().relative_to(root.resolve())  # ValueError outside root
        shipped.append(ShippedFile(node_id, str(path), relative.as_posix(), Path(path).read_bytes()))
    shutil.rmtree(root)
    return shipped


def write_file(shipped: ShippedFile, output_dir: Path) -> Path:
    """Write ``shipped`` under ``output_dir``: its sub-folder, its prefix, the next free counter."""
    from nodeflow.image.files import resolve_output_folder, save_numbered

    relative = PurePosixPath(shipped.relative)
    match = NUMBERED.fullmatch(relative.name)
    name, suffix = (match["name"], match["suffix"]) if match else (relative.stem, relative.suffix)
    prefix = name if str(relative.parent) == "." else f"{relative.parent}/{name}"  # "sub/" names "_00001_.png"
    folder, name = resolve_output_folder(Path(output_dir), prefix)  # refuses a path leading outside
    return save_numbered(folder, name, suffix, lambda path: path.write_bytes(shipped.data))
