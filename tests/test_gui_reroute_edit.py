"""Authoring reroute points (issue 19): a dot added on a link or on a piece of one, links wired
from a dot's output (a fan-out through it) and outputs wired into a dot, with the document's own
type and cycle checks, each one undo step; and in a real window under Xvfb, a dot added on a
selected link from the Edit menu's command and a real-mouse drag from its output to another input."""

import json

import pytest

from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link
from nodeflow.gui import reroutes
from nodeflow.gui.document import Document, EditRefused
from nodeflow.gui.reroute_dots import curve_distance, curve_point
from nodeflow.gui.reroute_wiring import connect_from_dot, dot_source, route_into_dot
from tests.project import ROOT

FILE = ROOT / "tests" / "data" / "comfy" / "groups_and_reroutes_ui.json"  # dots 10, 11 (a chain), 12 (a fan-out)
PLAIN = ROOT / "tests" / "data" / "comfy" / "txt2img_ui.json"  # the same graph without reroutes
VAE, CLIP6, CLIP7 = Link("4", 2, "8", "vae"), Link("4", 1, "6", "clip"), Link("4", 1, "7", "clip")


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def snapshot(document):
    return list(document.workflow.links), reroutes.routes(document.workflow), dict(reroutes.reroutes(document.workflow))


def test_a_reroute_added_on_a_straight_link_bends_it_and_undo_takes_it_away(registry):
    """The link is drawn through the new dot (an id above every node's); the graph is unchanged;
    one undo step leaves no layout sections behind, and redo brings the dot back."""
    document = Document.open(registry, PLAIN)
    links = list(document.workflow.links)
    piece = (("node", "4", 2), ("node", "8", "vae"))
    added = reroutes.add_reroute(document, piece, [VAE], (700.0, 500.0))
    assert added == "10"  # nodes 3..9
    assert document.workflow.ui["reroutes"] == {"10": {"pos": [700.0, 500.0]}}
    assert reroutes.routes(document.workflow) == {VAE: ["10"]}
    assert document.workflow.links == links
    assert document.undo() == "add reroute"
    assert not {"routes", "reroutes"} & set(document.workflow.ui)
    assert document.redo() == "add reroute" and reroutes.routes(document.workflow) == {VAE: ["10"]}


def test_a_reroute_on_a_shared_piece_is_shared_and_on_a_branch_bends_only_that_link(registry):
    """On the trunk loader -> dot 12 both CLIP links pass the new dot before 12; on 12 -> node 6 only
    the link to 6 passes it, after 12; on 10 -> 11 the VAE chain gets it between them."""
    document = Document.open(registry, FILE)
    trunk = reroutes.add_reroute(document, (("node", "4", 1), ("reroute", "12")), [CLIP6, CLIP7], (300.0, 310.0))
    assert reroutes.routes(document.workflow)[CLIP6] == [trunk, "12"] == reroutes.routes(document.workflow)[CLIP7]
    branch = reroutes.add_reroute(document, (("reroute", "12"), ("node", "6", "clip")), [CLIP6], (440.0, 200.0))
    assert reroutes.routes(document.workflow)[CLIP6] == [trunk, "12", branch]
    assert reroutes.routes(document.workflow)[CLIP7] == [trunk, "12"]
    middle = reroutes.add_reroute(document, (("reroute", "10"), ("reroute", "11")), [VAE], (860.0, 820.0))
    assert reroutes.routes(document.workflow)[VAE] == ["10", middle, "11"]
    assert len({trunk, branch, middle, "10", "11", "12"}) == 6
    assert reroutes.segments(document.workflow)[("node", "4", 1), ("reroute", trunk)] == [CLIP6, CLIP7]
    for _ in range(3):
        document.undo()
    assert reroutes.routes(document.workflow) == {CLIP6: ["12"], CLIP7: ["12"], VAE: ["10", "11"]}
    assert set(document.workflow.ui["reroutes"]) == {"10", "11", "12"}
    # a piece no longer drawn (its link deleted meanwhile) takes no dot and records nothing
    document.disconnect(VAE)
    steps = len(document._undo)
    assert reroutes.add_reroute(document, (("reroute", "10"), ("reroute", "11")), [VAE], (0.0, 0.0)) is None
    assert len(document._undo) == steps


def test_a_link_from_a_dots_output_fans_out_through_it(registry):
    """From dot 11 (the VAE chain loader -> 10 -> 11 -> decode) to a new VAE Decode's vae input: a
    link from the loader's VAE output drawn through 10 and 11, sharing their pieces; one undo step."""
    document = Document.open(registry, FILE)
    extra = document.add_node("VAEDecode", (1400.0, 600.0))
    before = snapshot(document)
    link = connect_from_dot(document, "11", extra, "vae")
    assert link == Link("4", 2, extra, "vae") and link in document.workflow.links
    assert reroutes.routes(document.workflow)[link] == ["10", "11"]
    assert reroutes.routes(document.workflow)[VAE] == ["10", "11"]
    pieces = reroutes.segments(document.workflow)
    assert pieces[("reroute", "10"), ("reroute", "11")] == [VAE, link]
    assert pieces[("reroute", "11"), ("node", extra, "vae")] == [link]
    assert document.undo() == "connect" and snapshot(document) == before
    assert document.redo() == "connect" and reroutes.routes(document.workflow)[link] == ["10", "11"]


def test_a_link_from_a_dot_into_an_occupied_input_replaces_its_link_and_route(registry):
    """Dot 12 carries CLIP; wiring it into prompt 6's clip input (already fed through 12) changes
    nothing; wiring dot 10 (VAE) into node 8's vae input (fed through 10 and 11) re-routes it
    through 10 only, as one step."""
    document = Document.open(registry, FILE)
    steps = len(document._undo)
    assert connect_from_dot(document, "12", "6", "clip") == CLIP6 and len(document._undo) == steps
    connect_from_dot(document, "10", "8", "vae")
    assert reroutes.routes(document.workflow)[VAE] == ["10"]
    assert document.workflow.links.count(VAE) == 1
    document.undo()
    assert reroutes.routes(document.workflow)[VAE] == ["10", "11"]


def test_wiring_through_a_dot_refuses_what_connect_refuses_and_changes_nothing(registry):
    """CLIP from dot 12 into the sampler's MODEL input: connect's own message, no undo step, the
    document as it was; a dot no link passes has no source to wire from."""
    document = Document.open(registry, FILE)
    before, steps = snapshot(document), len(document._undo)
    with pytest.raises(EditRefused, match=r"cannot connect CLIP to KSampler\.model \(MODEL\)"):
        connect_from_dot(document, "12", "3", "model")
    assert snapshot(document) == before and len(document._undo) == steps
    document.disconnect(VAE)  # dots 10 and 11 stay, carrying nothing
    with pytest.raises(EditRefused, match="no link goes through"):
        connect_from_dot(document, "11", "8", "vae")
    with pytest.raises(EditRefused, match="carries no link"):
        route_into_dot(document, ("4", 2, []), "10")


def test_an_output_dragged_into_a_dot_feeds_every_link_through_it(registry):
    """A second loader's CLIP into dot 12: both prompts now take their CLIP from it, still drawn
    through 12 (one step); its MODEL into dot 12 is refused (CLIP inputs); dot 11's output into
    dot 10 would pass 10 twice and is refused."""
    document = Document.open(registry, FILE)
    other = document.add_node("CheckpointLoaderSimple", (20.0, 700.0))
    before = snapshot(document)
    made = route_into_dot(document, (other, 1, []), "12")
    assert set(made) == {Link(other, 1, "6", "clip"), Link(other, 1, "7", "clip")}
    assert not {CLIP6, CLIP7} & set(document.workflow.links)
    assert reroutes.routes(document.workflow)[Link(other, 1, "6", "clip")] == ["12"]
    assert dot_source(document.workflow, "12") == (other, 1, [])
    assert document.undo() == "route into reroute" and snapshot(document) == before
    with pytest.raises(EditRefused, match="cannot connect MODEL"):
        route_into_dot(document, (other, 0, []), "12")
    with pytest.raises(EditRefused, match="twice"):
        route_into_dot(document, ("4", 2, ["10", "11"]), "10")
    assert snapshot(document) == before
    # dot 12's output (CLIP) into dot 11: refused by type (the VAE input beyond 11); dot 10's output
    # into 11, what already comes into 11: nothing changes
    with pytest.raises(EditRefused, match="cannot connect CLIP"):
        route_into_dot(document, ("4", 1, ["12"]), "11")
    assert route_into_dot(document, ("4", 2, ["10"]), "11") == []


def test_a_dot_added_by_hand_can_be_moved_and_deleted_keeping_its_link(registry):
    document = Document.open(registry, PLAIN)
    dot = reroutes.add_reroute(document, (("node", "4", 2), ("node", "8", "vae")), [VAE], (700.0, 500.0))
    reroutes.move_reroutes(document, {dot: (720.0, 520.0)})
    assert reroutes.position(document.workflow, dot) == [720.0, 520.0]
    reroutes.remove_reroutes(document, [dot])
    assert VAE in document.workflow.links and not {"routes", "reroutes"} & set(document.workflow.ui)
    assert [document.undo() for _ in range(3)] == ["delete 1 reroute(s)", "move reroute", "add reroute"]
    assert not {"routes", "reroutes"} & set(document.workflow.ui)


def test_dots_and_fan_outs_made_by_hand_survive_a_comfy_export(registry):
    """A dot added on a link and a second link wired from it come back from ComfyUI's UI format
    as the same links and routes (the new dot's numeric id keeps it a Reroute node there)."""
    import json

    from nodeflow.formats.comfy import from_comfy_ui, to_comfy_ui

    document = Document.open(registry, PLAIN)
    extra = document.add_node("VAEDecode", (1000.0, 500.0))
    dot = reroutes.add_reroute(document, (("node", "4", 2), ("node", "8", "vae")), [VAE], (700.0, 500.0))
    connect_from_dot(document, dot, extra, "vae")
    exported = json.loads(json.dumps(to_comfy_ui(document.workflow, registry)))
    assert [node["type"] for node in exported["nodes"]].count("Reroute") == 1
    back = from_comfy_ui(exported, registry)
    assert set(back.links) == set(document.workflow.links)
    expected = {VAE: [dot], Link("4", 2, extra, "vae"): [dot]}
    assert reroutes.routes(back) == reroutes.routes(document.workflow) == expected


def test_the_curve_a_double_click_is_measured_against_is_imnodes_link():
    """Its ends are the pins, its middle halfway between them (the menu's dot goes there), and a
    point beside a long horizontal-ish link's middle is measured by its distance to the curve."""
    start, end = (100.0, 100.0), (300.0, 200.0)
    assert curve_point(start, end, 0) == start and curve_point(start, end, 1) == end
    assert curve_point(start, end, 0.5) == pytest.approx((200.0, 150.0))
    assert curve_distance(start, end, (200.0, 150.0)) < 1
    assert 18 < curve_distance(start, end, (200.0, 172.0)) < 22
    assert curve_distance(start, end, (120.0, 180.0)) > 40


WINDOW = r"""
document = Document.open(registry, Path("tests/data/comfy/txt2img_ui.json"))
extra = document.add_node("VAEDecode", (700.0, 250.0))
document.move("4", (20.0, 120.0))
document.move("8", (700.0, 40.0))
for node_id, position in (("3", (300.0, 900.0)), ("5", (20.0, 900.0)), ("6", (700.0, 900.0)), ("7", (900.0, 900.0)),
                          ("9", (1200.0, 900.0))):
    document.move(node_id, position)  # out of the way, below the window
open_window(editor_for(document))
canvas = app.canvas
vae = [link for link in document.workflow.links if link.dst_input == "vae"][0]
[item] = [item for item, link in canvas.link_items.items() if link == vae]
a = canvas.pin_centre(canvas.port_to_pin[(vae.src, "out", vae.src_output)])
b = canvas.pin_centre(canvas.port_to_pin[(vae.dst, "in", "vae")])
middle = (int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2))
drive(["mousemove", *middle], ["click", 1])
selected = [canvas.link_items.get(i) == vae for i in dpg.get_selected_links("editor")]
app.layout.add_reroute_on_selection()  # Edit > Add reroute on selected link
frames(5)
[dot] = list(document.workflow.ui["reroutes"])
seen = {"selected": selected, "status_add": dpg.get_value("status"),
        "routes_after_add": {str(k): v for k, v in reroutes.routes(document.workflow).items()}}
x0, y0 = dpg.get_item_rect_min(canvas.reroute_dots.items[dot])
x1, y1 = dpg.get_item_rect_max(canvas.reroute_dots.items[dot])
seen["dot_middle"], seen["middle"] = [(x0 + x1) / 2, (y0 + y1) / 2], middle
out_pin = (int(x1 + 2), int((y0 + y1) / 2 + 2))  # the output pin: the dot's right edge, lower row
target = canvas.pin_centre(canvas.port_to_pin[(extra, "in", "vae")])
drive(["mousemove", *out_pin], ["mousedown", 1], ["mousemove", int((out_pin[0] + target[0]) / 2), int(target[1])],
      ["mousemove", int(target[0]), int(target[1])], ["mouseup", 1])
seen["status_wire"] = dpg.get_value("status")
seen["selected_after_wire"] = dpg.get_selected_links("editor")
seen["links"] = [[l.src, l.src_output, l.dst, l.dst_input] for l in document.workflow.links]
seen["routes"] = {str(k): v for k, v in reroutes.routes(document.workflow).items()}
seen["pieces"] = len(canvas.reroute_dots.pieces)
shot = tmp / "fanout.png"
dpg.output_frame_buffer(file=str(shot))
frames(3)
branch = Link("4", 2, extra, "vae")
[piece] = [item for item, links in canvas.reroute_dots.pieces.items() if links == [branch]]
start, end = canvas.reroute_dots.piece_ends[piece]
a, b = canvas.reroute_dots._screen(start, "out"), canvas.reroute_dots._screen(end, "in")
drive(["mousemove", int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2)], ["click", "--repeat", 2, "--delay", 80, 1])
seen["status_double_click"] = dpg.get_value("status")
seen["routes_double_click"] = {str(k): v for k, v in reroutes.routes(document.workflow).items()}
seen["undo_0"] = document.undo()
seen["undo"] = document.undo()
frames(3)
seen["links_undone"] = [[l.src, l.src_output, l.dst, l.dst_input] for l in document.workflow.links]
seen["undo_2"] = document.undo()
seen["layout_left"] = sorted({"routes", "reroutes"} & set(document.workflow.ui))
seen["extra"], seen["dot"] = extra, dot
report(**seen)
"""
WINDOW_HEAD = "from nodeflow.engine.workflow import Link\nfrom nodeflow.gui import reroutes\n"


@pytest.mark.gui
def test_window_adds_a_reroute_on_a_clicked_link_and_wires_a_fan_out_from_it(display, tmp_path):
    """Click the loader's VAE link (selected), Edit > Add reroute on selected link: a dot at the
    link's middle that the link is drawn through; drag from the dot's output pin to a second VAE
    Decode's vae input with the real mouse: a link from the loader's VAE output through the dot
    (three pieces drawn); a double-click on the new branch puts a second dot on it alone; undo
    takes that dot away, then the new link, then the first dot."""
    from tests.test_gui_window import run_scenario

    result = run_scenario(tmp_path, WINDOW_HEAD + WINDOW)
    dot, extra = result["dot"], result["extra"]
    assert result["selected"] == [True], result
    assert result["status_add"] == "added a reroute"
    assert result["routes_after_add"] == {str(VAE): [dot]}
    assert result["dot_middle"] == pytest.approx(result["middle"], abs=3)
    assert result["status_wire"] == "connected through the reroute", json.dumps(result)
    assert ["4", 2, extra, "vae"] in result["links"] and ["4", 2, "8", "vae"] in result["links"]
    assert result["routes"] == {str(VAE): [dot], str(Link("4", 2, extra, "vae")): [dot]}
    assert result["pieces"] == 3  # loader -> dot shared, dot -> 8, dot -> the new decoder
    assert result["selected_after_wire"] == []  # not the clicked link's old selection, on another piece
    [dot_2] = set(result["routes_double_click"][str(Link("4", 2, extra, "vae"))]) - {dot}
    assert result["status_double_click"] == "added a reroute", json.dumps(result)
    assert result["routes_double_click"] == {str(VAE): [dot], str(Link("4", 2, extra, "vae")): [dot, dot_2]}
    assert result["undo_0"] == "add reroute"
    assert result["undo"] == "connect" and ["4", 2, extra, "vae"] not in result["links_undone"]
    assert result["undo_2"] == "add reroute" and result["layout_left"] == []


REBUILD = r"""
document = Document.open(registry, Path("tests/data/comfy/txt2img_ui.json"))
document.move("4", (20.0, 120.0))
document.move("8", (700.0, 40.0))
open_window(editor_for(document))
canvas = app.canvas
vae = [link for link in document.workflow.links if link.dst_input == "vae"][0]
a = canvas.pin_centre(canvas.port_to_pin[(vae.src, "out", vae.src_output)])
b = canvas.pin_centre(canvas.port_to_pin[(vae.dst, "in", "vae")])
drive(["mousemove", int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2)], ["click", 1])
seen = {"before": [str(canvas.link_items.get(i)) for i in dpg.get_selected_links("editor")]}
document.add_node("VAEDecode", (700.0, 400.0))  # structural edits: the canvas is rebuilt ...
frames(1)
document.disconnect([l for l in document.workflow.links if l.dst_input == "samples"][0])  # ... links move up
frames(3)
seen["after"] = [str(canvas.link_items.get(i)) for i in dpg.get_selected_links("editor")]
report(**seen)
"""


@pytest.mark.gui
def test_window_a_rebuild_leaves_no_link_selected(display, tmp_path):
    """imnodes keeps a link selection by position: after a rebuild in which the links moved up it
    marked the MODEL link (seen without the fix), and Delete would have removed a link the user
    never clicked. The rebuild clears it."""
    from tests.test_gui_window import run_scenario

    result = run_scenario(tmp_path, REBUILD)
    assert result["before"] == [str(VAE)], result
    assert result["after"] == [], result
