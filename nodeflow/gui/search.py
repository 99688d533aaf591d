"""Adding nodes by name: the toolbar's search box, its list of matches and placing the chosen type.

Owns ``search_nodes`` (the ranking, no dearpygui) and the popup listing the matches under the
search box; the box itself is in the window's toolbar (app.py), which sends its text here and
its Enter key to ``place_first_match``.
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.gui.canvas import Canvas
from nodeflow.gui.run_view import show_status

MAX_MATCHES = 40  # at most this many matches are listed under the search box


def search_nodes(registry, text: str) -> list:
    """Node types whose name or description contains ``text``: a name equal to it first (spaces
    and case aside: "CLIP Text Encode", "cliptextencode"), then names starting with it, then names
    containing each of its words ("ksampler adv"), then descriptions; shorter names first within each (Enter places the first, so
    "KSampler" must beat "KSampler (Advanced)" and "CLIP Text Encode (SDXL Refiner)" must not
    beat "CLIP Text Encode")."""
    text = text.strip().lower()
    if not text:
        return []
    squeezed, words = text.replace(" ", ""), text.split()

    def rank(spec) -> tuple[int, int]:
        names = (spec.display.lower(), spec.id.lower())
        if any(name.replace(" ", "") == squeezed for name in names):
            place = 0
        elif any(name.startswith(text) for name in names):
            place = 1
        else:
            place = 2 if any(all(word in name for word in words) for name in names) else 3
        return place, len(spec.display)

    ranked = [(rank(spec), spec) for spec in registry]
    found = [(r, spec) for r, spec in ranked if r[0] < 3 or text in spec.description.lower()]
    return [spec for _, spec in sorted(found, key=lambda pair: pair[0])]


class NodeSearch:
    """The matches of the search box (tag ``search``), placed on the canvas when chosen."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.hidden_theme = None  # set by build_popup

    @property
    def registry(self):
        return self.canvas.document.registry

    def build_popup(self, hidden_theme) -> None:
        """Matches float under the search box, over the canvas. The window stays shown (drawn as
        nothing while there are no matches): dearpygui focuses a window shown again, ending typing."""
        self.hidden_theme = hidden_theme
        with dpg.window(tag="search_popup", no_title_bar=True, no_move=True, no_resize=True, autosize=True,
                        no_focus_on_appearing=True, no_saved_settings=True, min_size=(1, 1)):
            dpg.add_listbox(tag="search_results", items=[], num_items=6, width=420,
                            callback=lambda s, a: self._place_chosen(a))
        self._show_matches([])

    def text_changed(self, sender, text: str) -> None:
        matches = [f"{s.display}  [{s.id}]" for s in search_nodes(self.registry, text)]
        self._show_matches(matches[:MAX_MATCHES])

    def _show_matches(self, matches: list[str]) -> None:
        """The first match is highlighted: it is the one Enter places."""
        dpg.configure_item("search_results", items=matches, show=bool(matches))
        if matches:
            dpg.set_value("search_results", matches[0])
        dpg.bind_item_theme("search_popup", 0 if matches else self.hidden_theme)
        if matches:  # under the search box
            x, _ = dpg.get_item_rect_min("search")
            _, y = dpg.get_item_rect_max("search")
        else:  # a few invisible pixels in the window's bottom-right margin
            x, y = dpg.get_viewport_client_width() - 6, dpg.get_viewport_client_height() - 6
        dpg.configure_item("search_popup", pos=(x, y + 2 if matches else y))

    def clear(self) -> None:
        """The box empties and its matches go (Escape)."""
        dpg.set_value("search", "")
        self._show_matches([])

    def place_first_match(self) -> None:
        """Enter in the search box: the best match goes on the canvas."""
        matches = search_nodes(self.registry, dpg.get_value("search"))
        if matches:
            self._place(matches[0].id)
        else:
            show_status("no node matches the search", error=True)

    def _place_chosen(self, choice: str) -> None:
        self._place(choice.rsplit("[", 1)[1].rstrip("]"))

    def _place(self, type_id: str) -> None:
        """A node of ``type_id`` at the mouse on the canvas (else at its centre); the box empties."""
        self.canvas.add_node(type_id, self.canvas.placement())
        self.clear()
        show_status(f"added {self.registry.get(type_id).display}")
