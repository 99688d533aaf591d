"""What happens to seed widgets after a run: fixed, increment, decrement or randomize.

The choice is stored per node and input in the workflow's UI section
(``ui["seed_control"][node_id][input]``), as ComfyUI keeps "control after generate" with the node.
The rules themselves are nodeflow.sweeps.seeds' (``--repeat`` applies them without a display);
here they are applied through the editor's undoable document.
"""

from __future__ import annotations

import random

from nodeflow.sweeps.seeds import DEFAULT_MODE, MODES, SECTION, next_seed, seed_mode

__all__ = ["DEFAULT_MODE", "MODES", "SECTION", "next_seed", "seed_mode", "seeds_after_run", "set_seed_mode"]


def seeds_after_run(document, rng: random.Random | None = None) -> dict[tuple[str, str], int]:
    """Apply every seed widget's mode through document commands; returns the changed values."""
    changed = {}
    for node_id, node in list(document.workflow.nodes.items()):
        spec = document.registry.specs.get(node.type)
        if spec is None:
            continue
        for input_spec in spec.inputs:
            if not input_spec.seed or document.workflow.input_link(node_id, input_spec.name):
                continue
            value = int(node.inputs.get(input_spec.name, input_spec.default or 0))
            new = next_seed(value, seed_mode(document.workflow, node_id, input_spec.name), rng)
            if new != value:
                document.set_value(node_id, input_spec.name, new)
                changed[(node_id, input_spec.name)] = new
    return changed


def set_seed_mode(document, node_id: str, input_name: str, mode: str) -> None:
    """Choose what the seed does after a run (an undoable document command)."""
    if mode not in MODES:
        raise ValueError(f"unknown seed mode {mode!r}")
    if mode != seed_mode(document.workflow, node_id, input_name):
        document.set_node_setting(SECTION, node_id, input_name, mode)
