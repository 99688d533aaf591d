"""Groups and reroute points in the editor (issue 19): a ComfyUI UI file's groups and Reroute
nodes come in as layout (the graph that runs is unchanged), the document's commands edit them
with undo, they survive our save and a ComfyUI export; and in a real window under Xvfb a group's
title drags its nodes and the reroute dots sit where the file says."""

import json

import pytest

from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link
from nodeflow.formats import load_workflow
from nodeflow.formats.comfy import from_comfy_ui, to_comfy_api, to_comfy_ui
from nodeflow.gui import groups, reroutes
from nodeflow.gui.document import Document
from tests.project import ROOT

FILE = ROOT / "tests" / "data" / "comfy" / "groups_and_reroutes_ui.json"
PLAIN = ROOT / "tests" / "data" / "comfy" / "txt2img_ui.json"  # the same graph without reroutes


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def test_import_keeps_reroutes_as_layout_and_the_graph_unchanged(registry):
    """Links go straight from source to target (a fan-out through dot 12, a chain through dots
    10 and 11); the dots and the links' routes are in ``ui``; the API export is that of the
    same graph without reroutes."""
    workflow = load_workflow(FILE, registry)
    plain = load_workflow(PLAIN, registry)
    assert set(workflow.links) == set(plain.links)
    assert set(workflow.nodes) == set(plain.nodes)
    assert workflow.ui["reroutes"] == {"10": {"pos": [420.0, 820.0]}, "11": {"pos": [1300.0, 820.0]},
                                       "12": {"pos": [400.0, 300.0]}}
    assert reroutes.routes(workflow) == {Link("4", 1, "6", "clip"): ["12"], Link("4", 1, "7", "clip"): ["12"],
                                         Link("4", 2, "8", "vae"): ["10", "11"]}
    assert to_comfy_api(workflow, registry) == to_comfy_api(plain, registry)
    assert [g["title"] for g in workflow.ui["groups"]] == ["Prompts", "Sampling"]
    pieces = reroutes.segments(workflow)
    assert pieces[("node", "4", 1), ("reroute", "12")] == [Link("4", 1, "6", "clip"), Link("4", 1, "7", "clip")]
    assert pieces[("reroute", "10"), ("reroute", "11")] == [Link("4", 2, "8", "vae")]
    assert len(pieces) == 6  # 4->12 shared, 12->6, 12->7; 4->10, 10->11, 11->8


def test_comfy_ui_export_writes_reroute_nodes_back(registry):
    """The export has Reroute nodes 10, 11 and 12 wired as in the file (one wire 4 -> 12 for the
    fan-out), and reads back with the same links, dots and routes; the groups go out unchanged."""
    workflow = load_workflow(FILE, registry)
    exported = json.loads(json.dumps(to_comfy_ui(workflow, registry)))
    by_id = {node["id"]: node for node in exported["nodes"]}
    assert {i for i, node in by_id.items() if node["type"] == "Reroute"} == {10, 11, 12}
    wires = {link[0]: link[1:5] for link in exported["links"]}
    into_12 = by_id[12]["inputs"][0]["link"]
    assert wires[into_12] == [4, 1, 12, 0]
    assert sorted(wires[w][2] for w in by_id[12]["outputs"][0]["links"]) == [6, 7]
    assert by_id[4]["outputs"][1]["links"] == [into_12]  # CLIP leaves the loader once, to the dot
    assert wires[by_id[8]["inputs"][1]["link"]] == [11, 0, 8, 1]
    assert exported["groups"] == json.loads(FILE.read_text())["groups"]
    back = from_comfy_ui(exported, registry)  # (node values gain the widgets' defaults: not compared)
    assert back.links == workflow.links
    assert {key: back.ui[key] for key in ("reroutes", "routes", "groups")} == \
        {key: workflow.ui[key] for key in ("reroutes", "routes", "groups")}


def test_save_and_reopen_keep_groups_and_reroutes(registry, tmp_path):
    document = Document.open(registry, FILE)
    saved = document.save(tmp_path / "mine.json")
    reopened = Document.open(registry, saved)
    assert reopened.workflow.ui["groups"] == document.workflow.ui["groups"]
    assert reopened.workflow.ui["reroutes"] == document.workflow.ui["reroutes"]
    assert reroutes.routes(reopened.workflow) == reroutes.routes(document.workflow)
    assert reopened.workflow.links == document.workflow.links


def test_group_commands_undo_and_redo(registry):
    """Group the selection, move the group with its nodes (one step), rename, delete (the nodes stay)."""
    document = Document(registry)
    a = document.add_node("EmptyLatentImage", (100, 100))
    b = document.add_node("EmptyLatentImage", (100, 300))
    outside = document.add_node("EmptyLatentImage", (800, 100))
    boxes = {a: (100, 100, 400, 200), b: (100, 300, 400, 400), outside: (800, 100, 1100, 200)}
    index = groups.add_group(document, [boxes[a], boxes[b]])
    group = document.workflow.ui["groups"][index]
    assert group["title"] == "Group" and group["color"] == groups.DEFAULT_COLOR
    x0, y0, x1, y1 = groups.box(group)
    assert x0 < 100 and y0 < 100 - groups.TITLE_HEIGHT + 1 and x1 > 400 and y1 > 400
    assert groups.members(group, boxes) == [a, b]
    groups.move_group(document, index, (x0 + 50, y0 + 20), groups.members(group, boxes))
    assert document.position(a) == [150.0, 120.0] and document.position(b) == [150.0, 320.0]
    assert document.position(outside) == [800.0, 100.0]
    assert groups.box(document.workflow.ui["groups"][index])[:2] == (x0 + 50, y0 + 20)
    assert document.undo() == "move group"  # nodes and frame back in one step
    assert document.position(a) == [100.0, 100.0] and groups.box(document.workflow.ui["groups"][index])[:2] == (x0, y0)
    assert document.redo() == "move group" and document.position(b) == [150.0, 320.0]
    groups.rename_group(document, index, "Latents")
    assert document.workflow.ui["groups"][index]["title"] == "Latents"
    groups.remove_groups(document, [index])
    assert "groups" not in document.workflow.ui and set(document.workflow.nodes) == {a, b, outside}
    document.undo()
    assert document.workflow.ui["groups"][index]["title"] == "Latents"


def test_deleting_a_routed_link_or_a_reroute_keeps_the_document_consistent(registry):
    """A link deleted takes its route along (the dots stay); a dot deleted leaves its links,
    drawn without it; removing a node removes the routes of its links; all undoable."""
    document = Document.open(registry, FILE)
    vae, clip7 = Link("4", 2, "8", "vae"), Link("4", 1, "7", "clip")
    document.disconnect(vae)
    assert vae not in reroutes.routes(document.workflow) and {"10", "11"} <= set(document.workflow.ui["reroutes"])
    assert reroutes.link_key(vae) not in [route["link"] for route in document.workflow.ui["routes"]]  # pruned
    document.undo()
    assert reroutes.routes(document.workflow)[vae] == ["10", "11"]
    reroutes.remove_reroutes(document, ["10"])
    assert vae in document.workflow.links and reroutes.routes(document.workflow)[vae] == ["11"]
    reroutes.remove_reroutes(document, ["11"])
    assert vae in document.workflow.links and vae not in reroutes.routes(document.workflow)
    document.undo()
    assert reroutes.routes(document.workflow)[vae] == ["11"]
    document.remove_nodes(["7"])
    assert clip7 not in reroutes.routes(document.workflow)
    assert reroutes.link_key(clip7) not in [route["link"] for route in document.workflow.ui["routes"]]
    assert reroutes.routes(document.workflow)[Link("4", 1, "6", "clip")] == ["12"]  # the fan-out's other branch
    reroutes.move_reroutes(document, {"12": (10.0, 20.0)})
    assert document.workflow.ui["reroutes"]["12"]["pos"] == [10.0, 20.0]
    assert document.undo() == "move reroute" and document.workflow.ui["reroutes"]["12"]["pos"] == [400.0, 300.0]


def test_a_plain_workflow_gets_no_layout_sections(registry):
    """Graphs without groups or reroutes keep their ``ui`` as before (no empty sections written)."""
    document = Document.open(registry, PLAIN)
    document.disconnect(document.workflow.links[0])
    assert not {"routes", "reroutes", "groups"} & set(document.workflow.ui)


WINDOW = r"""
from nodeflow.gui.view import View
import numpy as np
from PIL import Image

document = Document.open(registry, Path("tests/data/comfy/groups_and_reroutes_ui.json"))
open_window(editor_for(document))
frames(5)
canvas = app.canvas
cx, cy = dpg.get_item_rect_min("canvas")
pan = canvas.pan
dots = {rid: list(dpg.get_item_rect_min(item)) for rid, item in canvas.reroute_dots.items.items()}
expected = {rid: [cx + pan[0] + x, cy + pan[1] + y] for rid, (x, y) in
            ((rid, document.workflow.ui["reroutes"][rid]["pos"]) for rid in dots)}
shot = tmp / "shot.png"
dpg.output_frame_buffer(file=str(shot))
frames(3)
pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
def patch(x, y):  # the mean colour of a 6x6 patch at workflow point (x, y), as drawn
    sx, sy = int(cx + pan[0] + x), int(cy + pan[1] + y)
    return pixels[sy - 3:sy + 3, sx - 3:sx + 3].reshape(-1, 3).mean(axis=0).tolist()
seen = {"dots": dots, "expected": expected, "inside": patch(470, 400), "outside": patch(910, 400),
        "dot_pixel": patch(404, 306), "handle_labels": [dpg.get_item_label(h) for h in canvas.group_frames.handles.values()]}
handle = canvas.group_frames.handles[0]  # "Prompts"
hx, hy = dpg.get_item_rect_min(handle)
before = {node_id: document.position(node_id) for node_id in ("6", "7", "3", "5")}
drive(["mousemove", int(hx + 60), int(hy + 2)], ["mousedown", 1], ["mousemove", int(hx + 110), int(hy + 30)],
      ["mousemove", int(hx + 160), int(hy + 62)], ["mouseup", 1])
seen["before"] = before
seen["after"] = {node_id: document.position(node_id) for node_id in before}
seen["group_after"] = document.workflow.ui["groups"][0]["bounding"]
seen["drawn_6"] = [v - p for v, p in zip(dpg.get_item_pos(canvas.node_items["6"]), canvas.view.to_grid(document.position("6")))]
frames(3)
dpg.output_frame_buffer(file=str(shot))
frames(3)
pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
moved = [a - b for a, b in zip(document.position("6"), before["6"])]
seen["old_place"], seen["new_place"] = patch(465, 400), patch(465 + moved[0], 400 + moved[1])  # the frame's left edge
seen["status_undo"] = document.undo()
seen["undone"] = {node_id: document.position(node_id) for node_id in before}
seen["group_undone"] = document.workflow.ui["groups"][0]["bounding"]
report(**seen)
"""


@pytest.mark.gui
def test_window_draws_frames_and_dots_and_a_group_title_drags_its_nodes(display, tmp_path):
    """The reroute dots are drawn at the file's positions; a group's body is tinted in its colour
    (behind the canvas's grid); dragging the "Prompts" title with the real mouse moves the group and
    the two prompts inside it (not the sampler or the latent outside), and one undo puts all back."""
    from tests.test_gui_window import run_scenario

    result = run_scenario(tmp_path, WINDOW)
    for rid, (x, y) in result["dots"].items():
        ex, ey = result["expected"][rid]
        assert abs(x - ex) <= 4 and abs(y - ey) <= 4, (rid, result["dots"], result["expected"])
    inside, outside = result["inside"], result["outside"]
    assert inside[2] - inside[0] > outside[2] - outside[0] + 10, (inside, outside)  # tinted blue (#3f789e)
    assert min(result["dot_pixel"]) > 120, result["dot_pixel"]  # the pale dot
    assert result["handle_labels"] == ["Prompts", "Sampling"]
    before, after = result["before"], result["after"]
    dx, dy = after["6"][0] - before["6"][0], after["6"][1] - before["6"][1]
    assert dx > 50 and dy > 30, result
    assert [after["7"][0] - before["7"][0], after["7"][1] - before["7"][1]] == pytest.approx([dx, dy], abs=0.2)
    assert after["3"] == before["3"] and after["5"] == before["5"], result
    assert result["group_after"][:2] == pytest.approx([460 + dx, 20 + dy], abs=0.2)
    assert result["drawn_6"] == [0, 0], result  # drawn where the document has it
    old, new = result["old_place"], result["new_place"]  # the frame is drawn again where the group went
    assert new[2] - new[0] > old[2] - old[0] + 10, (old, new)
    assert result["status_undo"] == "move group"
    assert result["undone"] == before and result["group_undone"][:2] == [460, 20], result
