"""A ``SweepSpec`` as a list of jobs, in the order that reuses the most cached work.

Each ``--sweep`` is an axis (with ``--zip``, all of them are one axis); ``--repeat N`` adds an axis
of N runs whose seeds move on as the editor's queue moves them (``seeds``). The jobs are the
cartesian product of the axes. The run order varies the most-downstream input fastest: axes are
nested by the position of their nodes in the graph's topological order, the most upstream outermost,
so an upstream result (a text encoding, a loaded model) is computed once and then served from the
cache while everything below it varies. Jobs are plain data (JSON-ready), so any backend can run them.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from nodeflow.engine import graph as graphs
from nodeflow.errors import NodeflowError
from nodeflow.sweeps.seeds import seed_mode, seeds_for_runs
from nodeflow.sweeps.spec import MAX_VALUES, SweepError, SweepSpec

REPEAT_AXIS = "repeat"


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: the values its positions set, and how to label them."""

    name: str  # "3.seed", "3.seed + 3.cfg" (zipped), or "repeat"
    title: str  # for the legend: "seed (KSampler 3)"
    keys: tuple[str, ...]  # the NODE.INPUT keys it sets
    steps: tuple[dict[str, Any], ...]  # per position: {NODE.INPUT: value}
    labels: tuple[str, ...]  # per position, for the grid

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "keys": list(self.keys), "labels": list(self.labels)}


@dataclass(frozen=True)
class Job:
    """One run of the workflow: the values it sets and its place on each axis."""

    index: int  # position in the run order
    values: dict[str, Any]  # NODE.INPUT -> value
    cell: tuple[int, ...]  # position on each axis, axes in the grid's order

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "values": dict(self.values), "cell": list(self.cell)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(int(data["index"]), dict(data["values"]), tuple(int(c) for c in data["cell"]))


@dataclass(frozen=True)
class SweepPlan:
    """The axes in the grid's order (sweeps as given, the repeat axis last) and the jobs in run
    order; ``nesting`` lists axis indices from the outermost loop to the innermost."""

    axes: tuple[Axis, ...]
    jobs: tuple[Job, ...]
    nesting: tuple[int, ...]


def plan_jobs(spec: SweepSpec, workflow, registry, rng: random.Random | None = None) -> SweepPlan:
    """The jobs of ``spec`` on ``workflow``, ordered for cache hits; raises ``SweepError`` when
    there would be more than ``MAX_VALUES`` of them."""
    axes = make_axes(spec, workflow, registry, rng)
    total = math.prod(len(axis) for axis in axes)
    if total > MAX_VALUES:
        sizes = " x ".join(str(len(axis)) for axis in axes)
        raise SweepError(f"the sweep makes {sizes} = {total} jobs; at most {MAX_VALUES} (use --zip to pair values)")
    depth = axis_depths(axes, workflow, registry)
    # Outermost first: the most upstream axis; of two at one depth, the grid's X axis innermost.
    nesting = tuple(sorted(range(len(axes)), key=lambda a: (depth[a], -a)))
    jobs = []
    for index, positions in enumerate(itertools.product(*(range(len(axes[a])) for a in nesting))):
        cell = [0] * len(axes)
        values: dict[str, Any] = {}
        for axis_index, position in zip(nesting, positions):
            cell[axis_index] = position
        for axis_index, axis in enumerate(axes):
            values.update(axis.steps[cell[axis_index]])
        jobs.append(Job(index, values, tuple(cell)))
    return SweepPlan(tuple(axes), tuple(jobs), nesting)


def make_axes(spec: SweepSpec, workflow, registry, rng: random.Random | None = None) -> list[Axis]:
    """The grid's axes: one per sweep (one for all with ``zip``), then ``repeat`` when > 1."""
    axes = []
    if spec.zip and spec.sweeps:
        count = len(spec.sweeps[0].values)
        steps = tuple({s.key: s.values[i] for s in spec.sweeps} for i in range(count))
        labels = tuple(", ".join(f"{s.input_name}={value_label(s.values[i])}" for s in spec.sweeps)
                       for i in range(count))
        axes.append(Axis(" + ".join(s.key for s in spec.sweeps), " + ".join(s.label for s in spec.sweeps),
                         tuple(s.key for s in spec.sweeps), steps, labels))
    else:
        for s in spec.sweeps:
            axes.append(Axis(s.key, s.label, (s.key,), tuple({s.key: v} for v in s.values),
                             tuple(value_label(v) for v in s.values)))
    if spec.repeat > 1:
        swept = frozenset(s.key for s in spec.sweeps)
        runs = seeds_for_runs(workflow, registry, spec.repeat, rng, exclude=swept)
        keys = tuple(runs[0]) if runs else ()
        labels = tuple(f"#{i + 1}" + (f" seed {run[keys[0]]}" if len(keys) == 1 else "") for i, run in enumerate(runs))
        modes = ", ".join(f"{key} {seed_mode(workflow, *key.split('.', 1))}" for key in keys)
        title = f"run ({spec.repeat} runs; seeds: {modes or 'none'})"
        axes.append(Axis(REPEAT_AXIS, title, keys, tuple(runs), labels))
    return axes


def axis_depths(axes: list[Axis], workflow, registry) -> list[int]:
    """Each axis's depth: the latest position, in the run's topological order, of a node it sets
    (an axis setting nodes that do not run sorts first: its changes are free)."""
    return keys_depths([axis.keys for axis in axes], workflow, registry)


def keys_depths(key_sets, workflow, registry) -> list[int]:
    """For each set of ``NODE.INPUT`` keys, the latest position of its nodes in the run's
    topological order (-1: none of them runs)."""
    try:
        order = graphs.plan(workflow, registry).order
    except NodeflowError:  # an unknown type: validation reports it before any job runs
        order = ()
    position = {node_id: index for index, node_id in enumerate(order)}
    return [max((position.get(key.split(".", 1)[0], -1) for key in keys), default=-1) for keys in key_sets]


def value_label(value: Any) -> str:
    """A value as a grid label: ``42``, ``7.5``, ``true``, or the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply_values(workflow, values: dict[str, Any]) -> None:
    """Set ``NODE.INPUT`` values on ``workflow`` (a job's copy)."""
    for key, value in values.items():
        node_id, _, input_name = key.partition(".")
        workflow.nodes[node_id].inputs[input_name] = value
