"""Wiring through reroute dots: a link dragged from a dot's output, or an output dragged into a dot.

A dot is no node (reroutes.py): what comes out of it is what comes into it, the source output of
the links drawn through it. So, as ComfyUI users expect:

- dragging from a dot's output to an input makes a real link from that source output to the
  input, drawn through the dot and the dots before it (a fan-out: the new link shares the pieces
  up to the dot with the links already there);
- dragging an output (or another dot's output) into a dot's input gives every link through the
  dot that source instead; each keeps its route from the dot on.

Either is one undoable edit that follows the document's own rules for links: each new link is
checked by ``Document.check_connect`` against the links planned before it, so a type mismatch, a
cycle or a missing input is refused with connect's own message (``EditRefused``), and an
occupied input loses its old link as usual; then the links and their routes are applied to the
document as one layout edit.

No dearpygui here: reroute_dots.py turns the editor's link callback into these calls.
"""

from __future__ import annotations

from nodeflow.engine.workflow import Link, Workflow
from nodeflow.gui import reroutes
from nodeflow.gui.document import Document, EditRefused, linked

#: Where a link comes from: (node id, output index, the dots it passes first, source side first).
Source = tuple


def dot_source(workflow: Workflow, reroute_id: str) -> Source:
    """What comes into dot ``reroute_id``: the source output of the links through it and the dots
    they pass before it (those of the first such link, in the links' order). Refused when no link
    passes the dot (nothing comes in) or links from different outputs do (nothing single comes out)."""
    found = [(link.src, link.src_output, via[:via.index(reroute_id)])
             for link, via in reroutes.routes(workflow).items() if reroute_id in via]
    if not found:
        raise EditRefused("no link goes through that reroute yet: drag an output into it first")
    if len({(src, output) for src, output, _ in found}) > 1:
        raise EditRefused("links from different outputs pass that reroute")
    return found[0]


def connect_from_dot(document: Document, reroute_id: str, dst: str, dst_input: str) -> Link:
    """A link from the dot's source output to ``dst``'s input ``dst_input``, drawn through the
    dot (and the dots before it): one edit, labelled "connect" like any link."""
    src, src_output, before = dot_source(document.workflow, reroute_id)
    link = Link(src, src_output, dst, dst_input)
    _wire(document, {link: [*before, reroute_id]}, "connect")
    return link


def route_into_dot(document: Document, source: Source, reroute_id: str) -> list[Link]:
    """Every link through the dot comes from ``source`` now, through the dots ``source`` names,
    then on from the dot as before: one edit. Refused when no link passes the dot (a lone dot
    has no target to wire to: ComfyUI keeps such a dangling Reroute, our links cannot) or when a
    link would pass a dot twice. Returns the links made ([] when they are all there already)."""
    src, src_output, before = source
    carried = {link: via for link, via in reroutes.routes(document.workflow).items() if reroute_id in via}
    if not carried:
        raise EditRefused("that reroute carries no link: drag from its output to an input instead, "
                          "or add reroutes on an existing link")
    wanted = {}
    for link, via in carried.items():
        route = [*before, *via[via.index(reroute_id):]]
        if len(set(route)) != len(route):
            raise EditRefused("that would route a link through the same reroute twice")
        wanted[Link(src, src_output, link.dst, link.dst_input)] = route
    return _wire(document, wanted, "route into reroute")


def _wire(document: Document, wanted: dict[Link, list[str]], label: str) -> list[Link]:
    """Make the links ``wanted`` with their routes as one edit; nothing when all are there already.
    Refused (EditRefused) where ``Document.connect`` would refuse one of them."""
    current = reroutes.routes(document.workflow)
    if all(link in document.workflow.links and current.get(link, []) == via for link, via in wanted.items()):
        return []
    links = list(document.workflow.links)
    for link in wanted:  # checked against the links planned so far, as one connect after another
        document.check_connect(link.src, link.src_output, link.dst, link.dst_input, links)  # EditRefused
        links = linked(links, link)

    def change(workflow: Workflow) -> None:
        workflow.links = list(links)
        chosen = reroutes.routes(workflow)  # the routes of the links that stay
        chosen.update(wanted)
        reroutes.write_routes(workflow, chosen)

    document.edit_layout(label, change)
    return list(wanted)
