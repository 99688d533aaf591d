"""The node menu's "Model's size: W x H" entries on an Empty Latent Image.

The node menu (app.py) is built once; the group made by ``build`` inside it is filled again each
time the menu opens on a node (``fill``): empty for other node types and when no model loader of
the graph tells its size, else one entry per size told. Choosing one sets width and height as
one undoable edit. What the sizes are is native_size.py's.
"""

from __future__ import annotations

from collections.abc import Callable

import dearpygui.dearpygui as dpg

from nodeflow.gui.native_size import LATENT_SIZE_TYPES, NativeSizes, Size, size_label, size_values

GROUP = "node_menu_sizes"


class LatentSizeMenu:
    """The size entries of the node menu, over the document ``document()`` returns."""

    def __init__(self, sizes: NativeSizes, document: Callable[[], object],
                 status: Callable[..., None]) -> None:
        self.sizes, self.document, self.status = sizes, document, status

    def build(self) -> None:
        """The (empty) group of entries, inside the node menu being built."""
        dpg.add_group(tag=GROUP)

    def fill(self, node_id: str) -> None:
        """The entries for the node the menu opens on."""
        dpg.delete_item(GROUP, children_only=True)
        document = self.document()
        node = document.workflow.nodes.get(node_id)
        if node is None or node.type not in LATENT_SIZE_TYPES:
            return
        for size in self.sizes.in_graph(document.workflow, document.registry):
            dpg.add_menu_item(label=size_label(size), parent=GROUP, user_data=(node_id, size),
                              callback=lambda s, a, chosen: self.apply(*chosen))

    def apply(self, node_id: str, size: Size) -> None:
        document = self.document()
        if node_id in document.workflow.nodes:
            document.set_values(node_id, size_values(size), label="set the model's size")
            self.status(f"size set to {size[0]} x {size[1]}")
