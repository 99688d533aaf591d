"""Which worker runs which sweep job, when several workers (Ray actors) each hold an executor and
its cache: jobs that share upstream work stay together, so one worker computes that work once.

Jobs are grouped by the values of their non-downstream-most inputs: every swept input except those
of the axes whose nodes come last in the run's topological order (the axes the local run order
varies fastest). Jobs of one group differ only below everything else, so a worker that runs a group
loads its models and encodes its prompts once. When there are fewer groups than workers, the largest
groups are cut in halves (contiguous in run order) until every worker has a unit of work: each half
then repeats the group's upstream work once, which is the price of running in parallel.

A ``JobQueue`` hands a worker the next job of its current unit, else the next unit; a worker that
dies gives its unfinished jobs back to the front of the queue, for another worker to take.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from nodeflow.sweeps.jobs import Job, keys_depths


def group_jobs(jobs: list[Job], axes: list[dict[str, Any]], workflow, registry) -> list[list[int]]:
    """Job indices grouped by the values of the non-downstream-most axes (``axes``: the
    manifest's, each with its ``keys``), groups and jobs in run order."""
    depths = keys_depths([axis["keys"] for axis in axes], workflow, registry)
    deepest = max(depths, default=-1)
    upstream_keys = sorted(key for axis, depth in zip(axes, depths) if depth < deepest for key in axis["keys"])
    groups: dict[str, list[int]] = {}
    for job in jobs:
        shared = json.dumps([job.values.get(key) for key in upstream_keys], sort_keys=True, default=repr)
        groups.setdefault(shared, []).append(job.index)
    return list(groups.values())


def split_units(groups: list[list[int]], workers: int) -> list[list[int]]:
    """``groups`` with the largest cut in halves until there are at least ``workers`` units (or
    every unit is one job)."""
    units = [list(group) for group in groups if group]
    while len(units) < workers:
        largest = max(range(len(units)), key=lambda i: len(units[i]), default=None)
        if largest is None or len(units[largest]) < 2:
            break
        unit = units[largest]
        middle = (len(unit) + 1) // 2
        units[largest:largest + 1] = [unit[:middle], unit[middle:]]
    return units


class JobQueue:
    """Units of job indices handed out to workers (see the module docstring)."""

    def __init__(self, units: list[list[int]]) -> None:
        self._waiting: deque[list[int]] = deque(list(unit) for unit in units if unit)
        self._current: dict[str, deque[int]] = {}

    def next_job(self, worker: str) -> int | None:
        """The next job for ``worker``: from its current unit, else from the next unit waiting."""
        current = self._current.get(worker)
        if not current:
            if not self._waiting:
                return None
            current = self._current[worker] = deque(self._waiting.popleft())
        return current.popleft()

    def give_back(self, worker: str, unfinished: list[int]) -> None:
        """``worker`` is gone: ``unfinished`` (the jobs it was running) and the rest of its unit
        wait first in line, in run order."""
        jobs = list(unfinished) + list(self._current.pop(worker, ()))
        if jobs:
            self._waiting.appendleft(sorted(jobs))

    def remaining(self) -> list[int]:
        """Jobs not handed out yet."""
        return sorted([index for unit in self._waiting for index in unit]
                      + [index for unit in self._current.values() for index in unit])
