"""The node library panel: every node type by category, a search box, and what each one does.

View > Node library (Ctrl+L) shows a panel docked at the left of the canvas, which moves right
to make room (``make_room``: nothing is hidden under the panel, and zoom to fit sees the room
left; the window moves the live preview along, run_view.py; the history panel docks at the
right the same way, history_panel.py): a collapsible tree with the add menu's categories, a
search box filtering it as the user types (name, id, category or description), and under the
tree the description from the node's
declaration of the entry under the mouse (else the one clicked last). Clicking an entry adds
that node where new nodes go (``on_add``: one undoable step); Enter in the search box adds the
first match.

The tree is built once: a search only shows and hides its items (library_index.py decides which),
so typing stays quick with ~200 node types.
"""

from __future__ import annotations

from collections.abc import Callable

import dearpygui.dearpygui as dpg

from nodeflow.gui.library_index import categories_with, category_tree, describe, library_entries, matching_ids

WIDTH = 300
DESCRIPTION_HEIGHT = 150  # the description's area under the tree
BELOW = 140  # room left under the panel: the canvas's own (canvas.py), for the log panel
SPACING = 8  # the gap between the panel and the canvas


class NodeLibrary:
    """The panel (tag ``node_library``) over a registry; ``on_add(type_id)`` places a node and
    ``make_room(pixels)`` has the canvas start that far right (0: back at the window's edge).
    ``build`` makes it, hidden, as the last item of the main window: shown, it is placed where the
    canvas began, and takes no room from the items around it."""

    def __init__(self, registry, on_add: Callable[[str], None], make_room: Callable[[int], None]) -> None:
        self.registry, self.on_add, self.make_room = registry, on_add, make_room
        self.entries = library_entries(registry)
        self.tree = category_tree(self.entries)
        self.entry_items: dict[str, int] = {}  # node type id -> its selectable
        self.item_entries: dict[int, str] = {}  # and back (hover events name the item)
        self.category_items: dict[str, int] = {}  # category path -> its tree node
        self.shown: dict[int, bool] = {}  # items as last shown (only changes are sent to dearpygui)
        self.open_before_search: dict[str, bool] | None = None  # the tree as the user left it
        self.described: str | None = None  # the entry whose description is shown

    # ----- building ------------------------------------------------------------------------
    def build(self) -> None:
        """The panel (hidden), the hover handler that describes entries, and Enter in its search box."""
        with dpg.child_window(tag="node_library", show=False, width=WIDTH, height=-BELOW):
            with dpg.group(horizontal=True):
                dpg.add_input_text(tag="library_search", hint="search nodes (Enter adds the first)", width=-30,
                                   callback=lambda s, text: self.filter(text))
                dpg.add_button(label="x", tag="library_close", callback=lambda: self.toggle())
            with dpg.tooltip("library_close"):
                dpg.add_text("hide the node library (Ctrl+L)")
            with dpg.child_window(tag="library_tree", height=-DESCRIPTION_HEIGHT, border=False):
                for category in self.tree:
                    self._add_category(category)
            dpg.add_separator()
            with dpg.child_window(tag="library_about", border=False):
                dpg.add_text("", tag="library_title", color=(150, 200, 255), wrap=WIDTH - 30)
                dpg.add_text("point at a node type to read what it does; click to add it",
                             tag="library_description", wrap=WIDTH - 30)
        with dpg.item_handler_registry(tag="library_hover"):
            dpg.add_item_hover_handler(callback=lambda s, item: self._hovered(item))
        for item in self.entry_items.values():
            dpg.bind_item_handler_registry(item, "library_hover")
        with dpg.handler_registry():
            dpg.add_key_press_handler(dpg.mvKey_Return, callback=lambda: self._on_enter())
            dpg.add_key_press_handler(dpg.mvKey_NumPadEnter, callback=lambda: self._on_enter())

    def _add_category(self, category) -> None:
        with dpg.tree_node(label=category.name) as node:
            self.category_items[category.path] = node
            for child in category.children:
                self._add_category(child)
            for entry in category.entries:
                item = dpg.add_selectable(label=entry.display, user_data=entry.id,
                                          callback=lambda s, a, type_id: self.choose(type_id))
                self.entry_items[entry.id] = item
                self.item_entries[item] = entry.id

    # ----- showing -------------------------------------------------------------------------
    @property
    def visible(self) -> bool:
        return dpg.does_item_exist("node_library") and dpg.is_item_shown("node_library")

    def toggle(self) -> None:
        """View > Node library, Ctrl+L: shown or hidden."""
        if self.visible:
            dpg.configure_item("node_library", show=False)
            self._shown_changed(False)
            self.make_room(0)
        else:
            self.show()

    def show(self) -> None:
        """Shown where the canvas began, the canvas moved right past it, the search box taking
        the keyboard."""
        if self.visible:
            return
        x, y = dpg.get_item_rect_min("canvas")
        dpg.configure_item("node_library", show=True, pos=(int(x), int(y)))
        dpg.focus_item("library_search")
        self._shown_changed(True)
        self.make_room(WIDTH + SPACING)

    @staticmethod
    def _shown_changed(shown: bool) -> None:
        """The View menu's check mark follows the panel (also when hidden by its own button)."""
        if dpg.does_item_exist("menu_node_library"):
            dpg.set_value("menu_node_library", shown)

    # ----- searching -----------------------------------------------------------------------
    def filter(self, text: str) -> None:
        """Only the entries matching ``text`` and the categories holding them stay shown; while
        searching, those categories are open (the tree comes back as it was when the box empties)."""
        searching = bool(text.strip())
        if searching and self.open_before_search is None:
            self.open_before_search = {path: bool(dpg.get_value(item)) for path, item in self.category_items.items()}
        ids = matching_ids(self.entries, text)
        categories = categories_with(self.tree, ids)
        for type_id, item in self.entry_items.items():
            self._show(item, type_id in ids)
        for path, item in self.category_items.items():
            self._show(item, path in categories)
            if searching and path in categories:
                dpg.set_value(item, True)
        if not searching and self.open_before_search is not None:
            for path, was_open in self.open_before_search.items():
                dpg.set_value(self.category_items[path], was_open)
            self.open_before_search = None

    def _show(self, item: int, show: bool) -> None:
        if self.shown.get(item, True) != show:
            dpg.configure_item(item, show=show)
            self.shown[item] = show

    def matches(self) -> list[str]:
        """The entries shown now, in the tree's order (what Enter picks from)."""
        ids = matching_ids(self.entries, dpg.get_value("library_search"))
        order = []

        def visit(category) -> None:
            for child in category.children:
                visit(child)
            order.extend(entry.id for entry in category.entries if entry.id in ids)

        for category in self.tree:
            visit(category)
        return order

    def _on_enter(self) -> None:
        if self.visible and dpg.is_item_focused("library_search"):
            first = self.matches()[:1]
            if first:
                self.choose(first[0])

    # ----- choosing ------------------------------------------------------------------------
    def choose(self, type_id: str) -> None:
        """A click on an entry: it stays highlighted and described, and its node is added."""
        for other, item in self.entry_items.items():
            if dpg.get_value(item) != (other == type_id):
                dpg.set_value(item, other == type_id)
        self.describe(type_id)
        self.on_add(type_id)

    def _hovered(self, item: int) -> None:
        type_id = self.item_entries.get(item)
        if type_id is not None:
            self.describe(type_id)

    def describe(self, type_id: str) -> None:
        """The area under the tree tells what ``type_id`` does (from its declaration)."""
        if type_id == self.described:
            return
        spec = self.registry.get(type_id)
        dpg.set_value("library_title", f"{spec.display}  [{spec.id}]  in {spec.category}")
        dpg.set_value("library_description", describe(spec))
        self.described = type_id
