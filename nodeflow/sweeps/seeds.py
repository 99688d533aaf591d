"""What a seed does between runs of ``--repeat``: fixed, increment, decrement or randomize, as
the editor's queue applies "control after generate" after each run.

The choice is kept per node and input in the workflow's UI section
(``ui["seed_control"][node_id][input]``; ComfyUI UI files bring it in as ``control_after_generate``);
a seed without one is randomized, as in the editor. The same rules as ``nodeflow.gui.seed_control``
(which works through the editor's undoable document), here on plain workflows without a display.
"""

from __future__ import annotations

import random
from typing import Any

from nodeflow.spec import SEED_MAX

MODES = ("fixed", "increment", "decrement", "randomize")
DEFAULT_MODE = "randomize"
SECTION = "seed_control"


def seed_mode(workflow, node_id: str, input_name: str) -> str:
    """The mode of one seed input (the editor's default when the workflow names none)."""
    return workflow.ui.get(SECTION, {}).get(node_id, {}).get(input_name, DEFAULT_MODE)


def next_seed(value: int, mode: str, rng: random.Random | None = None) -> int:
    """The seed after a run in ``mode`` (wrapping within 0..SEED_MAX)."""
    if mode == "increment":
        return (value + 1) % (SEED_MAX + 1)
    if mode == "decrement":
        return (value - 1) % (SEED_MAX + 1)
    if mode == "randomize":
        return (rng or random.Random()).randint(0, SEED_MAX)
    return value


def seed_inputs(workflow, registry) -> list[tuple[str, str]]:
    """(node id, input name) of every seed value the queue moves on: seed widgets of normal nodes
    that are not linked, in the workflow's node order."""
    found = []
    for node_id, node in workflow.nodes.items():
        spec = registry.specs.get(node.type)
        if spec is None or node.mode != "normal":
            continue
        for input_spec in spec.inputs:
            if input_spec.seed and workflow.input_link(node_id, input_spec.name) is None:
                found.append((node_id, input_spec.name))
    return found


def seeds_for_runs(workflow, registry, runs: int, rng: random.Random | None = None,
                   exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The seed values of ``runs`` queued runs, ``{"NODE.INPUT": seed}`` per run: the first run
    uses the workflow's values, each later one the values after the one before (its mode).
    ``exclude``: ``NODE.INPUT`` keys set otherwise (a sweep), left out."""
    rng = rng or random.Random()
    current: dict[str, int] = {}
    modes: dict[str, str] = {}
    registry_specs = registry.specs
    for node_id, input_name in seed_inputs(workflow, registry):
        key = f"{node_id}.{input_name}"
        if key in exclude:
            continue
        spec = registry_specs[workflow.nodes[node_id].type].input(input_name)
        current[key] = int(workflow.nodes[node_id].inputs.get(input_name, spec.default or 0))
        modes[key] = seed_mode(workflow, node_id, input_name)
    runs_seeds = []
    for _ in range(runs):
        runs_seeds.append(dict(current))
        current = {key: next_seed(value, modes[key], rng) for key, value in current.items()}
    return runs_seeds
