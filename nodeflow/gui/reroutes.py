"""Reroute points: dots that links are drawn through, kept as layout in the workflow's ``ui``.

ComfyUI's Reroute nodes only bend links on the screen; the graph that runs goes straight from
source to target. So a reroute is no node here: ``workflow.links`` hold the real links, which is
all the executor, validation, caching and the API export ever read, and the ``ui`` section says
how those links are drawn:

- ``ui["reroutes"]``: ``{reroute id: {"pos": [x, y]}}`` (ComfyUI's Reroute node ids, as text);
- ``ui["routes"]``: ``[{"link": [src, src_output, dst, dst_input], "via": [reroute ids]}]``, the
  reroutes a link passes through, from its source to its target, in the links' saved order. A
  chain is a route with several reroutes; fan-out is several routes sharing their first reroutes.

New dots are added on a drawn piece of a link (``add_reroute``); wiring through a dot (a link
from its output, an output into its input) is reroute_wiring.py's.

Edits keep this consistent (``prune``, run after every document change): a route whose link is
gone goes (deleting a link deletes its bends), a deleted reroute leaves the routes through it
(the link stays, drawn without that dot). A reroute no route passes through stays, as in ComfyUI.

No dearpygui here: reroute_dots.py draws them; this module is tested without a display.
"""

from __future__ import annotations


from nodeflow.engine.workflow import Link, Workflow, is_numeric_id
from nodeflow.formats.reroute_layout import link_key, reroutes, routes  # noqa: F401 (this module's API too)

#: One end of a drawn segment: ("node", node id, output index or input name) or ("reroute", id).
End = tuple


def position(workflow: Workflow, reroute_id: str) -> list[float]:
    return list(reroutes(workflow).get(reroute_id, {}).get("pos") or [0.0, 0.0])


def prune(workflow: Workflow) -> None:
    """Drop routes of links that are gone and reroutes that are gone from routes (see module
    docstring); an empty section is removed, so graphs without reroutes keep their ``ui`` as it was."""
    if "routes" not in workflow.ui:
        return
    kept = [{"link": link_key(link), "via": via} for link, via in routes(workflow).items()]
    if kept != workflow.ui["routes"]:
        workflow.ui["routes"] = kept
    if not kept:
        del workflow.ui["routes"]


def write_routes(workflow: Workflow, chosen: dict[Link, list[str]]) -> None:
    """Store ``chosen`` as the workflow's routes, in its links' order (the saved order the
    module docstring promises); links without reroutes get no route."""
    kept = [{"link": link_key(link), "via": list(chosen[link])} for link in workflow.links if chosen.get(link)]
    if kept:
        workflow.ui["routes"] = kept
    else:
        workflow.ui.pop("routes", None)


def new_reroute_id(workflow: Workflow) -> str:
    """An id for a new dot: a number above every node's and dot's, so a ComfyUI export can keep
    it as the Reroute node's id (formats/comfy.py renumbers only ids that clash)."""
    numbers = [int(i) for i in (*workflow.nodes, *reroutes(workflow)) if is_numeric_id(i)]
    return str(max(numbers, default=0) + 1)


def segments(workflow: Workflow) -> dict[tuple[End, End], list[Link]]:
    """The pieces links are drawn as, each with the links it carries: source -> first reroute,
    reroute -> reroute, last reroute -> target. Fan-out shares the pieces before the split."""
    pieces: dict[tuple[End, End], list[Link]] = {}
    for link, via in routes(workflow).items():
        ends = [("node", link.src, link.src_output), *(("reroute", r) for r in via),
                ("node", link.dst, link.dst_input)]
        for piece in zip(ends, ends[1:]):
            pieces.setdefault(piece, []).append(link)
    return pieces


# ----- commands (undoable document edits) ------------------------------------------------------
def move_reroutes(document, positions: dict[str, tuple[float, float]]) -> None:
    """Put reroutes at new positions (workflow units), as one edit; unmoved ones are skipped."""
    moved = {rid: [float(x), float(y)] for rid, (x, y) in positions.items() if rid in reroutes(document.workflow)
             and [round(v, 1) for v in position(document.workflow, rid)] != [round(float(x), 1), round(float(y), 1)]}
    if not moved:
        return

    def change(workflow: Workflow) -> None:
        for rid, pos in moved.items():
            workflow.ui["reroutes"][rid]["pos"] = pos

    document.edit_layout("move reroute" if len(moved) == 1 else f"move {len(moved)} reroutes", change,
                         structural=False)


def add_reroute(document, piece: tuple[End, End], links: list[Link], position: tuple[float, float]) -> str | None:
    """A new dot at ``position`` (workflow units, its top-left corner) on the drawn piece
    ``piece`` (its two ends, as ``segments`` names them) that carries ``links``: each of those
    links is then drawn through the dot, between the piece's ends; one edit. A dot on a piece
    shared by a fan-out is shared by all its links, as in ComfyUI. Returns the dot's id (None when
    none of ``links`` is drawn along that piece any more)."""
    current = routes(document.workflow)
    start = piece[0]
    placed = {}
    for link in dict.fromkeys(links):
        via = current.get(link, [])
        if link not in document.workflow.links or (start[0] == "reroute" and start[1] not in via):
            continue
        index = via.index(start[1]) + 1 if start[0] == "reroute" else 0
        placed[link] = index
    if not placed:
        return None
    reroute_id = new_reroute_id(document.workflow)

    def change(workflow: Workflow) -> None:
        workflow.ui.setdefault("reroutes", {})[reroute_id] = {"pos": [float(position[0]), float(position[1])]}
        chosen = routes(workflow)
        for link, index in placed.items():
            via = chosen.get(link, [])
            chosen[link] = [*via[:index], reroute_id, *via[index:]]
        write_routes(workflow, chosen)

    document.edit_layout("add reroute", change)
    return reroute_id


def remove_reroutes(document, reroute_ids: list[str]) -> None:
    """Delete reroute dots; the links through them stay (drawn without those bends)."""
    present = [rid for rid in reroute_ids if rid in reroutes(document.workflow)]
    if not present:
        return

    def change(workflow: Workflow) -> None:
        for rid in present:
            del workflow.ui["reroutes"][rid]
        if not workflow.ui["reroutes"]:
            del workflow.ui["reroutes"]  # the routes lose these dots in prune, after the edit

    document.edit_layout(f"delete {len(present)} reroute(s)", change)
