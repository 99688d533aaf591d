"""Reading the reroute layout a workflow's ``ui`` keeps (what it means: nodeflow/gui/reroutes.py).

``ui["reroutes"]`` holds the dots, ``ui["routes"]`` the links drawn through them. Both the editor
and the ComfyUI export read them; this is the one reader they share (formats may not import gui).
"""

from __future__ import annotations

from typing import Any

from nodeflow.engine.workflow import Link, Workflow


def link_key(link: Link) -> list:
    """A link as a route stores it (JSON: a list)."""
    return [link.src, link.src_output, link.dst, link.dst_input]


def reroutes(workflow: Workflow) -> dict[str, dict[str, Any]]:
    return workflow.ui.get("reroutes") or {}


def routes(workflow: Workflow) -> dict[Link, list[str]]:
    """Each link drawn through reroutes, with the reroutes it passes, source side first (only
    routes of links the workflow has, through reroutes it has)."""
    known, present = set(reroutes(workflow)), set(workflow.links)
    found = {}
    for route in workflow.ui.get("routes") or []:
        link = Link(*route["link"])
        via = [r for r in route.get("via", []) if r in known]
        if link in present and via:
            found[link] = via
    return found
