"""Links on the canvas: drawn in their type's colour, input pins that cannot take a dragged link
dimmed, and a link dropped on empty canvas opening a search of the nodes that take it (real
windows under Xvfb driven by xdotool; the scenario helpers are test_gui_window's)."""

import pytest

from tests.test_gui_window import run_scenario

# Pixels of the window as drawn (output_frame_buffer) and the colours of the theme.
PIXELS = r"""
import numpy as np
from PIL import Image
from nodeflow.gui.theme import DIMMED_PIN, socket_color

def screenshot():
    shot = tmp / "shot.png"
    dpg.output_frame_buffer(file=str(shot))
    frames(3)
    return np.asarray(Image.open(shot).convert("RGB")).astype(int)

def nearest(pixels, box, color):  # the distance to ``color`` of the closest pixel in ``box``
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = pixels[y0:y1 + 1, x0:x1 + 1]
    return float(np.sqrt(((region - np.array(color)) ** 2).sum(axis=-1)).min())

def pin_pixel(pixels, port):  # a pin's colour at its centre
    x, y = app.canvas.pin_centre(app.port_to_pin[port])
    return [int(v) for v in pixels[int(round(y)), int(round(x))]]

def output_pin(node_id, index=0):
    return [int(v) for v in app.canvas.pin_centre(app.port_to_pin[(node_id, "out", index)])]
"""

COLOURS = r"""
nodes = {name: document.add_node(name, position) for name, position in (
    ("CheckpointLoaderSimple", (20, 20)), ("EmptyLatentImage", (20, 200)), ("EmptyImage", (20, 360)),
    ("CLIPTextEncode", (380, 20)), ("VAEEncode", (380, 360)), ("KSampler", (780, 20)))}
for src, index, dst, name in (("CheckpointLoaderSimple", 0, "KSampler", "model"),
                              ("CheckpointLoaderSimple", 1, "CLIPTextEncode", "clip"),
                              ("CheckpointLoaderSimple", 2, "VAEEncode", "vae"),
                              ("CLIPTextEncode", 0, "KSampler", "positive"),
                              ("EmptyLatentImage", 0, "KSampler", "latent_image"),
                              ("EmptyImage", 0, "VAEEncode", "pixels")):
    document.connect(nodes[src], index, nodes[dst], name)
open_window(editor_for(document))  # at 100%: links 3 pixels wide
pixels = screenshot()
seen = {}
for link in document.workflow.links:  # just right of its output pin, where the link leaves it
    x, y = output_pin(link.src, link.src_output)
    socket = registry.get(document.workflow.nodes[link.src].type).outputs[link.src_output].type
    seen[socket] = nearest(pixels, (x + 6, y - 2, x + 9, y + 2), socket_color(socket))
report(seen=seen)
"""


@pytest.mark.gui
def test_links_are_drawn_in_their_output_types_colour(display, tmp_path):
    """Links of six types, where they leave their output pins, have their type's pin colour
    (without a theme per link, all would be imnodes' blue)."""
    result = run_scenario(tmp_path, PIXELS + COLOURS)
    assert set(result["seen"]) == {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE"}
    assert all(distance < 40 for distance in result["seen"].values()), result["seen"]


DIM = r"""
latent = document.add_node("EmptyLatentImage", (40, 60))
decode = document.add_node("VAEDecode", (420, 60))
open_window(editor_for(document))
start = output_pin(latent)
end = [int(v) for v in app.canvas.pin_centre(app.port_to_pin[(decode, "in", "samples")])]
before = screenshot()
drive(["mousemove", *start], ["mousedown", 1], ["mousemove", start[0] + 60, start[1] + 40],
      ["mousemove", end[0] - 40, end[1] + 60])
during = screenshot()
drive(["mousemove", *end], ["mouseup", 1])
after = screenshot()
report(pins={name: [pin_pixel(p, (decode, "in", input)) for p in (before, during, after)]
             for name, input in (("samples", "samples"), ("vae", "vae"))},
       colours={"LATENT": socket_color("LATENT"), "VAE": socket_color("VAE"), "dimmed": DIMMED_PIN},
       links=[[l.src, l.src_output, l.dst, l.dst_input] for l in document.workflow.links],
       latent=latent, decode=decode, popup=dpg.is_item_shown("link_search"))
"""


@pytest.mark.gui
def test_inputs_that_cannot_take_a_dragged_link_are_dimmed(display, tmp_path):
    """While a LATENT link is dragged from Empty Latent Image, VAE Decode's vae pin is drawn
    dimmed and its samples pin keeps its colour; dropped on samples, the link is made and every
    pin has its colour back (no search opens)."""
    result = run_scenario(tmp_path, PIXELS + DIM)
    colours = result["colours"]
    assert result["pins"]["samples"] == [colours["LATENT"]] * 3
    assert result["pins"]["vae"] == [colours["VAE"], colours["dimmed"], colours["VAE"]]
    assert result["links"] == [[result["latent"], 0, result["decode"], "samples"]]
    assert not result["popup"]


DROP = r"""
latent = document.add_node("EmptyLatentImage", (40, 60))
document.add_node("VAEDecode", (420, 60))
open_window(editor_for(document))
start = output_pin(latent)
drop = (start[0] + 200, start[1] + 200)
before = set(document.workflow.nodes)
drive(["mousemove", *start], ["mousedown", 1], ["mousemove", start[0] + 100, start[1] + 100],
      ["mousemove", *drop], ["mouseup", 1])
shown = dpg.is_item_shown("link_search")
listed = dpg.get_item_configuration("link_search_results")["items"]
drive(["type", "vae decode"], ["key", "Return"])
[added] = set(document.workflow.nodes) - before
report(shown=shown, listed=listed, drop=drop, corner=dpg.get_item_rect_min(app.node_items[added]),
       type=document.workflow.nodes[added].type, latent=latent, added=added,
       links=[[l.src, l.src_output, l.dst, l.dst_input] for l in document.workflow.links],
       closed=not dpg.is_item_shown("link_search"), undo=[document.undo(), document.undo()])
"""


@pytest.mark.gui
def test_a_link_dropped_on_empty_canvas_opens_a_search_for_nodes_taking_it(display, tmp_path):
    """A LATENT link dragged from Empty Latent Image and dropped on nothing opens the search at
    the drop point, listing only node types with a LATENT input; typing "vae decode" and Enter
    places VAE Decode there, with the link wired to its samples input."""
    result = run_scenario(tmp_path, PIXELS + DROP)
    assert result["shown"] and result["closed"]
    assert "VAE Decode  [VAEDecode]" in result["listed"] and "KSampler  [KSampler]" in result["listed"]
    assert not any("[CLIPTextEncode]" in item or "[EmptyLatentImage]" in item for item in result["listed"])
    assert result["type"] == "VAEDecode"
    assert result["links"] == [[result["latent"], 0, result["added"], "samples"]]
    padding = 8
    assert all(abs(got - padding - want) <= 2 for got, want in zip(result["corner"], result["drop"])), result
    assert result["undo"] == ["connect", "add VAE Decode"]


def test_linkable_nodes_are_those_with_an_input_taking_the_type():
    from nodeflow.engine.registry import Registry
    from nodeflow.gui.link_drag import first_input, linkable_nodes

    registry = Registry.load()
    ids = [spec.id for spec in linkable_nodes(registry, "VAE")]
    assert "VAEDecode" in ids and "VAEEncode" in ids and "CLIPTextEncode" not in ids
    assert [spec.id for spec in linkable_nodes(registry, "VAE", "vae decode")][0] == "VAEDecode"
    assert first_input(registry.get("VAEDecode"), "VAE") == "vae"
    assert first_input(registry.get("KSampler"), "INT") == "seed"  # a widget input takes a link too
    assert first_input(registry.get("KSampler"), "VAE") is None
