"""The manifest of a sweep: every job, its values, its files and its status, as JSON beside the
grids, rewritten atomically after every change so that a sweep killed at any moment (Ctrl-C,
SIGKILL, a power cut) leaves a manifest that ``--resume`` continues from.

```json
{"format": "nodeflow-sweep-manifest", "version": 1, "id": "<uuid4 hex>", "key": "<sha256>",
 "workflow": "workflows/txt2img.json", "output_dir": "/abs/output", "created": 1767225600.0,
 "spec": {"sweeps": [{"node": "3", "input": "seed", "values": [1, 2]}], "zip": false, "repeat": 1},
 "axes": [{"name": "3.seed", "title": "seed (KSampler 3)", "keys": ["3.seed"], "labels": ["1", "2"]}],
 "jobs": [{"index": 0, "values": {"3.seed": 1}, "cell": [0], "status": "done",
           "files": ["/abs/output/txt2img_00001_.png"], "executed": ["4", "3", "8", "9"],
           "cached": [], "seconds": 0.8, "error": null, "started": 1767225601.5}],
 "grids": ["/abs/output/sweeps/txt2img_00001/grid.png"]}
```

Job status: ``pending`` (not started), ``running`` (started; if the manifest still says so, the
process died in it), ``done``, ``failed`` (``error`` says why), ``cancelled`` (Ctrl-C). ``key`` is a
hash of the workflow as run and the sweep spec: ``--resume`` refuses a manifest of another sweep.
Images saved by a job carry ``{"id", "job", "values"}`` in a ``sweep`` text chunk, which is how
``--resume`` finds the files of a job the process died in before the manifest recorded them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from nodeflow.runtime.atomic import write_text_atomic
from nodeflow.sweeps.jobs import Job, SweepPlan
from nodeflow.sweeps.spec import SweepError, SweepSpec

FORMAT_NAME = "nodeflow-sweep-manifest"
FORMAT_VERSION = 1
IMAGE_CHUNK = "sweep"  # the text chunk of a job's images (see nodeflow.sweeps.run)
STATUSES = ("pending", "running", "done", "failed", "cancelled")
MAX_MANIFEST_BYTES = 256 * 2**20


def sweep_key(workflow, spec: SweepSpec) -> str:
    """A hash of what the sweep computes: the workflow's nodes and links (values included), the
    seed modes ``--repeat`` follows, and the spec (its values included)."""
    data = workflow.to_dict()
    identity = {"nodes": data["nodes"], "links": data["links"],
                "seed_control": workflow.ui.get("seed_control", {}), "spec": spec.to_dict()}
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_sweep_folder(output_dir: Path, name: str) -> Path:
    """A new folder ``output_dir/sweeps/NAME_NNNNN`` (the next free number; never reused)."""
    root = Path(output_dir) / "sweeps"
    root.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64].lstrip(".") or "sweep"
    existing = [p.name for p in root.iterdir()]
    counter = 1 + max((int(n[len(safe) + 1:]) for n in existing
                       if n.startswith(safe + "_") and n[len(safe) + 1:].isdigit()), default=0)
    while True:
        folder = root / f"{safe}_{counter:05}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another sweep took it
            counter += 1


class Manifest:
    """A sweep's record on disk (see the module docstring); ``save`` after every change."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.data = data

    @classmethod
    def create(cls, path: Path, *, key: str, workflow_name: str, output_dir: Path, spec: SweepSpec,
               plan: SweepPlan) -> Manifest:
        jobs = [{**job.to_dict(), "status": "pending", "files": [], "executed": [], "cached": [],
                 "seconds": None, "error": None, "started": None} for job in plan.jobs]
        data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "id": uuid.uuid4().hex, "key": key,
                "workflow": workflow_name, "output_dir": str(Path(output_dir).resolve()),
                "created": time.time(), "spec": spec.to_dict(),
                "axes": [axis.to_dict() for axis in plan.axes], "jobs": jobs, "grids": []}
        manifest = cls(path, data)
        manifest.save()
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest; anything unreadable is a ``SweepError`` naming the file."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise SweepError(f"{path}: too large for a sweep manifest")
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SweepError(f"{path}: no such manifest") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise SweepError(f"{path}: not a readable sweep manifest ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise SweepError(f"{path}: not a nodeflow sweep manifest")
        if data.get("version") != FORMAT_VERSION:
            raise SweepError(f"{path}: manifest version {data.get('version')!r}; this nodeflow reads {FORMAT_VERSION}")
        try:
            if not data["jobs"]:
                raise ValueError("no jobs")
            for position, entry in enumerate(data["jobs"]):
                if Job.from_dict(entry).index != position or entry["status"] not in STATUSES \
                        or not isinstance(entry["files"], list):
                    raise ValueError(f"job {position}")
            for axis in data["axes"]:
                str(axis["title"]), list(axis["labels"])
            str(data["id"]), str(data["key"]), Path(data["output_dir"])
        except (KeyError, TypeError, ValueError) as error:
            raise SweepError(f"{path}: a damaged sweep manifest ({error})") from None
        return cls(path, data)

    def save(self) -> None:
        self.data["updated"] = time.time()
        write_text_atomic(self.path, json.dumps(self.data, indent=1, ensure_ascii=False) + "\n")

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def key(self) -> str:
        return self.data["key"]

    @property
    def output_dir(self) -> Path:
        return Path(self.data["output_dir"])

    @property
    def jobs(self) -> list[dict[str, Any]]:
        return self.data["jobs"]

    def check_key(self, key: str) -> None:
        """Refuse to resume another sweep (other workflow, values or spec)."""
        if key != self.key:
            raise SweepError(f"{self.path}: this manifest is of another sweep (the workflow, its values or the "
                             f"--sweep/--zip/--repeat options differ); refusing to resume it")

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.jobs:
            counts[entry["status"]] += 1
        return counts

    def start(self, index: int) -> None:
        entry = self.jobs[index]
        entry.update(status="running", started=time.time(), error=None, files=[], executed=[], cached=[])
        self.save()

    def reset(self, index: int) -> None:
        """A started job goes back to ``pending`` (its worker died; it runs again)."""
        self.jobs[index].update(status="pending", started=None, files=[])
        self.save()

    def finish(self, index: int, result: dict[str, Any]) -> None:
        """Record a job's result (``run.JobResult.to_dict``)."""
        self.jobs[index].update({k: v for k, v in result.items() if k != "index"})
        self.save()

    def recover(self) -> list[Path]:
        """Before a resume: delete what unfinished jobs left (their files are made again when
        they run), so that every job's images exist once. The files are those the manifest
        records for jobs not done, and images carrying this sweep's id and such a job's index
        that a killed process saved before it could record them. Returns the files deleted."""
        unfinished = {entry["index"]: entry for entry in self.jobs if entry["status"] != "done"}
        if not unfinished:
            return []
        leftovers = {Path(f) for entry in unfinished.values() for f in entry["files"]}
        interrupted = [e for e in unfinished.values() if e["status"] == "running" and e.get("started")]
        if interrupted:
            since = min(e["started"] for e in interrupted) - 2.0  # file times are not exact
            for path in _recent_pngs(self.output_dir, since):
                if _job_of(path, self.id) in unfinished:
                    leftovers.add(path)
        leftovers -= {Path(f) for entry in self.jobs if entry["status"] == "done"
                      for f in entry["files"] + entry.get("reused", [])}  # never what a finished job shows
        removed = []
        for path in sorted(leftovers):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        for entry in unfinished.values():
            entry.update(status="pending", files=[], started=None)
        self.save()
        return removed


def _recent_pngs(folder: Path, since: float):
    """PNG files (not hidden) under ``folder`` modified at ``since`` or later."""
    for base, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.endswith(".png") and not name.startswith("."):
                path = Path(base) / name
                try:
                    if path.stat().st_mtime >= since:
                        yield path
                except OSError:
                    continue


def _job_of(path: Path, sweep_id: str) -> int | None:
    """The job index an image's ``sweep`` chunk names, if it belongs to sweep ``sweep_id``."""
    try:
        data = json.loads(read_text_chunk(path, IMAGE_CHUNK) or "null")
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("id") == sweep_id and isinstance(data.get("job"), int):
        return data["job"]
    return None


def read_text_chunk(path: Path, keyword: str, limit: int = 2**20) -> str | None:
    """The text of a PNG's ``tEXt`` chunk named ``keyword`` (at most ``limit`` bytes), walking the
    chunk headers only: neither the pixels nor the other (possibly huge) text chunks are read."""
    wanted = keyword.encode("latin-1")
    with open(path, "rb") as file:
        if file.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while True:
            header = file.read(8)
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"IEND":
                return None
            if kind == b"tEXt" and length <= limit:
                name, _, text = file.read(length).partition(b"\0")
                if name == wanted:
                    return text.decode("latin-1")
                file.seek(4, os.SEEK_CUR)  # the CRC
            else:
                file.seek(length + 4, os.SEEK_CUR)
