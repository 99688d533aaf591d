"""Load Image nodes on the canvas: the picture of their file, and a "Choose image..." button.

Under a LoadImage (or LoadImageMask) node's widgets the canvas shows a small picture of the
chosen file (image_input.py decodes it, within LoadImage's pixel limit) or, when there is none, a
short reason. The picture follows the node's ``image`` value however it changes (its combo, an
undo, a chosen file): ``follow`` compares, once a frame, what each node shows with the document.

The button (or a click on the picture) opens the file browser on images; the chosen file is brought into the user's input
folder (copied unless it is there already, never over a different file) and set as the node's
value by a document command, so it can be undone; the canvas is then rebuilt, so every image
combo lists the new file.

Textures: one per node showing a picture, kept while its file is unchanged (a rebuild of the
canvas reuses it) and freed when the node leaves the canvas (deleted, another workflow opened)
or shows another file, so they do not pile up in dearpygui's texture registry.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import dearpygui.dearpygui as dpg

from nodeflow.errors import ModelFileError
from nodeflow.gui import file_browser
from nodeflow.gui.file_listing import IMAGES
from nodeflow.gui.image_input import THUMBNAIL_SIZE, ThumbnailError, bring_into_inputs, thumbnail_for

logger = logging.getLogger(__name__)

IMAGE_NODES = ("LoadImage", "LoadImageMask")  # the node types whose ``image`` names an input file
IMAGE_INPUT = "image"
BUTTON_WIDTH = 180  # pixels at 100%, as the node's other widgets (canvas.WIDGET_WIDTH)
NOTE_COLOR = (160, 160, 160)


@dataclass
class Shown:
    """What a node on the canvas shows: its picture's group item and the value it is of."""

    group: int
    value: object


@dataclass
class Texture:
    """A node's picture in the texture registry, and the file state it was made from."""

    item: int
    key: tuple
    size: tuple[int, int]


class ImagePicker:
    """The pictures and "Choose image..." buttons of the canvas's Load Image nodes."""

    def __init__(self, canvas, paths) -> None:
        self.canvas, self.paths = canvas, paths
        self.shown: dict[str, Shown] = {}  # node id -> what it shows now
        self.textures: dict[str, Texture] = {}  # node id -> its picture's texture
        self.folder: Path | None = None  # where the browser opens: the last image's folder

    @property
    def document(self):
        return self.canvas.document

    def takes_image(self, node_id: str) -> bool:
        """Whether the node names an input image in a widget (not through a pin)."""
        node = self.document.workflow.nodes.get(node_id)
        return (node is not None and node.type in IMAGE_NODES and node.type in self.document.registry.specs
                and not self.document.is_pin(node_id, IMAGE_INPUT))

    # ----- on the canvas -------------------------------------------------------------------
    def decorate(self, node_id: str) -> None:
        """A node just built on the canvas: a Load Image node gets its button and picture."""
        item = self.canvas.node_items.get(node_id)
        if item is None or not self.takes_image(node_id):
            return
        with dpg.node_attribute(parent=item, attribute_type=dpg.mvNode_Attr_Static):
            button = dpg.add_button(label="Choose image...", user_data=node_id,
                                    callback=lambda s, a, u: self.choose(u))
            self.canvas.sized(button, width=BUTTON_WIDTH)
            group = dpg.add_group()
        self.shown[node_id] = Shown(group, object())  # nothing shown yet
        self._show(node_id)

    def follow(self) -> None:
        """Once a frame, after the canvas follows the document: nodes that left the canvas free
        their textures, and a node whose value changed shows its new file."""
        for node_id, shown in list(self.shown.items()):
            if not dpg.does_item_exist(shown.group) or node_id not in self.document.workflow.nodes:
                del self.shown[node_id]
            elif shown.value != self._value(node_id):
                self._show(node_id)
        for node_id in [n for n in self.textures if n not in self.shown]:
            self._free(node_id)

    def _value(self, node_id: str):
        return self.document.workflow.nodes[node_id].inputs.get(IMAGE_INPUT)

    def _show(self, node_id: str) -> None:
        """The node's picture of its current value, or why there is none."""
        shown, value = self.shown[node_id], self._value(node_id)
        for child in dpg.get_item_children(shown.group, 1):
            self.canvas.forget_sized(child)
        dpg.delete_item(shown.group, children_only=True)
        shown.value = value
        try:
            texture = self._texture(node_id, value)
        except ThumbnailError as reason:
            self._free(node_id)
            dpg.add_text(str(reason), parent=shown.group, color=NOTE_COLOR)
            return
        # a button, not a plain image: widgets under a node drawn above are disabled (stacking.py),
        # which a plain image cannot be; a click on the picture chooses another, as the button does
        picture = dpg.add_image_button(texture.item, parent=shown.group, user_data=node_id,
                                       callback=lambda s, a, u: self.choose(u))
        self.canvas.sized(picture, width=texture.size[0], height=texture.size[1])

    # ----- textures ------------------------------------------------------------------------
    def _texture(self, node_id: str, value) -> Texture:
        """The node's texture for ``value``: the one it has if made from the same file as it is
        now, else a new one (the old freed). Raises ``ThumbnailError``."""
        key = self._file_key(value)
        kept = self.textures.get(node_id)
        if kept is not None and kept.key == key and dpg.does_item_exist(kept.item):
            return kept
        pixels = thumbnail_for(value, self.paths, THUMBNAIL_SIZE)  # (H, W, 4)
        self._free(node_id)
        height, width = pixels.shape[:2]
        item = dpg.add_static_texture(width, height, pixels.ravel(), parent="textures")
        self.textures[node_id] = Texture(item, key, (width, height))
        return self.textures[node_id]

    def _file_key(self, value) -> tuple:
        """What identifies the picture of ``value``: the file it names, its size and its time
        (a file replaced under the same name gets a new picture at the next rebuild)."""
        if not value:
            raise ThumbnailError("no image chosen")
        try:
            path = self.paths.resolve_input(str(value))
            stat = os.stat(path)
        except (ModelFileError, OSError):
            raise ThumbnailError(f"{value}: not in the input folder") from None
        return str(value), str(path), stat.st_size, stat.st_mtime_ns

    def _free(self, node_id: str) -> None:
        texture = self.textures.pop(node_id, None)
        if texture is not None and dpg.does_item_exist(texture.item):
            dpg.delete_item(texture.item)

    # ----- choosing a file -----------------------------------------------------------------
    def choose(self, node_id: str) -> None:
        """The button: the file browser on images, in the folder the last one came from."""
        file_browser.ask_path("Choose an image", lambda path: self.chosen(node_id, path), (IMAGES,),
                              folder=self.folder)

    def chosen(self, node_id: str, path: Path) -> None:
        """A file was chosen for ``node_id``: into the input folder, then the node's value (one
        undoable edit); every combo then lists it."""
        self.folder = Path(path).parent
        if not self.takes_image(node_id):  # the node went (or is another) while the browser was open
            self.canvas.status("the Load Image node is gone", error=True)
            return
        try:
            name = bring_into_inputs(Path(path), self.paths)
        except OSError as error:
            self.canvas.status(f"cannot use {path}: {error}", error=True)
            return
        self.document.set_value(node_id, IMAGE_INPUT, name)
        self.canvas.rebuild()
        self.canvas.status(f"image {name} (in the input folder)")
