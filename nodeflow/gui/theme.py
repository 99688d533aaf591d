"""The editor's look: pins and links colored by socket type, nodes by state (running, cached, failed, muted),
and for each zoom level of the canvas a font and a theme holding the scaled node and widget sizes."""

from __future__ import annotations

import logging
from pathlib import Path

import dearpygui.dearpygui as dpg

from nodeflow.gui.view import LEVELS, scaled
from nodeflow.runtime.paths import project_assets_dir

logger = logging.getLogger(__name__)

FONT_SIZE = 14  # pixels, at 100%
MIN_FONT_SIZE = 2


def font_file() -> Path:
    """DejaVu Sans, shipped with its license in assets/fonts/ (no system fonts at run time)."""
    return project_assets_dir() / "fonts" / "DejaVuSans.ttf"


# Sizes that scale with the canvas's zoom: imnodes' and ImGui's defaults at 100% (style variable,
# value or (x, y)). Node borders and pin outlines keep their 1-pixel lines.
NODE_SIZES = {
    dpg.mvNodeStyleVar_GridSpacing: 24, dpg.mvNodeStyleVar_NodeCornerRounding: 4,
    dpg.mvNodeStyleVar_NodePadding: (8, 8), dpg.mvNodeStyleVar_LinkThickness: 3,
    dpg.mvNodeStyleVar_LinkHoverDistance: 10, dpg.mvNodeStyleVar_PinCircleRadius: 4,
    dpg.mvNodeStyleVar_PinQuadSideLength: 7, dpg.mvNodeStyleVar_PinTriangleSideLength: 9.5,
    dpg.mvNodeStyleVar_PinHoverRadius: 10,
}
WIDGET_SIZES = {
    dpg.mvStyleVar_FramePadding: (4, 3), dpg.mvStyleVar_ItemSpacing: (8, 4),
    dpg.mvStyleVar_ItemInnerSpacing: (4, 4), dpg.mvStyleVar_IndentSpacing: 21,
    dpg.mvStyleVar_ScrollbarSize: 14,
}
SMALLEST = {dpg.mvNodeStyleVar_GridSpacing: 8}  # denser grid lines would only darken the canvas

SOCKET_COLORS = {
    "MODEL": (180, 130, 230), "CLIP": (250, 210, 90), "VAE": (250, 110, 110),
    "CONDITIONING": (250, 160, 60), "LATENT": (250, 120, 200), "IMAGE": (100, 180, 250),
    "MASK": (120, 220, 150), "CONTROL_NET": (80, 200, 200), "SAMPLER": (236, 180, 180),
    "SIGMAS": (205, 255, 205), "NOISE": (176, 176, 176), "GUIDER": (102, 255, 255), "INT": (160, 200, 120),
    "FLOAT": (170, 210, 170), "STRING": (160, 200, 180), "BOOLEAN": (200, 200, 120),
    "CHOICE": (180, 180, 180), "*": (220, 220, 220),
}
DIMMED_PIN = (70, 70, 70)  # an input pin that cannot take the link being dragged, and its label
DIMMED_TEXT = (110, 110, 110)
NODE_STATES = {
    "normal": None,
    "running": (60, 140, 60),
    "cached": (60, 80, 120),
    "failed": (170, 40, 40),
    "muted": (70, 70, 70),
    "bypassed": (120, 60, 140),
}


class Themes:
    """Theme items, created once per window and reused."""

    def __init__(self) -> None:
        self.nodes = {}
        for state, color in NODE_STATES.items():
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNode):
                    if color is not None:
                        dpg.add_theme_color(dpg.mvNodeCol_TitleBar, color, category=dpg.mvThemeCat_Nodes)
                        dpg.add_theme_color(dpg.mvNodeCol_NodeOutline, color, category=dpg.mvThemeCat_Nodes)
            self.nodes[state] = theme
        self.pins = {}
        self.links = {}
        self.dimmed_pin = self._dimmed_pin()
        self.hidden_window = self._hidden_window()
        self.zoom = {level: self._zoom_theme(level) for level in LEVELS}
        self.fonts = self._fonts(font_file())

    @staticmethod
    def _zoom_theme(zoom: float) -> int:
        """Node and widget sizes at ``zoom`` (bound to the canvas; node padding in whole pixels,
        which the editor's coordinates rely on)."""
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvAll):
                for sizes, category in ((NODE_SIZES, dpg.mvThemeCat_Nodes), (WIDGET_SIZES, dpg.mvThemeCat_Core)):
                    for variable, value in sizes.items():
                        values = value if isinstance(value, tuple) else (value,)
                        smallest = SMALLEST.get(variable, 1)
                        dpg.add_theme_style(variable, *(max(scaled(v, zoom), smallest) for v in values),
                                            category=category)
        return theme

    @staticmethod
    def _fonts(path: Path) -> dict[float, int]:
        """One font per zoom level, built before the first frame (empty if the font file is
        missing: then text keeps dearpygui's own font and does not scale)."""
        if not path.is_file():
            logger.warning("font file %s not found: the canvas's text will not scale with its zoom", path)
            return {}
        with dpg.font_registry():
            return {level: dpg.add_font(str(path), max(MIN_FONT_SIZE, round(FONT_SIZE * level)))
                    for level in LEVELS}

    @staticmethod
    def _hidden_window() -> int:
        """A window drawn as nothing (no background, border or padding, 1x1): for a window that
        must stay shown, because dearpygui focuses a window when it is shown again."""
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvAll):
                dpg.add_theme_color(dpg.mvThemeCol_WindowBg, (0, 0, 0, 0))
                dpg.add_theme_color(dpg.mvThemeCol_Border, (0, 0, 0, 0))
                dpg.add_theme_style(dpg.mvStyleVar_WindowPadding, 0, 0)
                dpg.add_theme_style(dpg.mvStyleVar_WindowBorderSize, 0)
        return theme

    @staticmethod
    def _dimmed_pin() -> int:
        with dpg.theme() as theme:
            with dpg.theme_component(dpg.mvAll):
                dpg.add_theme_color(dpg.mvNodeCol_Pin, DIMMED_PIN, category=dpg.mvThemeCat_Nodes)
                dpg.add_theme_color(dpg.mvNodeCol_PinHovered, DIMMED_PIN, category=dpg.mvThemeCat_Nodes)
                dpg.add_theme_color(dpg.mvThemeCol_Text, DIMMED_TEXT)
        return theme

    def link(self, socket_type: str) -> int:
        """A link in its output pin's colour; hovered or selected, halfway to white."""
        if socket_type not in self.links:
            color = socket_color(socket_type)
            light = tuple((c + 255) // 2 for c in color)
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNodeLink):
                    dpg.add_theme_color(dpg.mvNodeCol_Link, color, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_color(dpg.mvNodeCol_LinkHovered, light, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_color(dpg.mvNodeCol_LinkSelected, light, category=dpg.mvThemeCat_Nodes)
            self.links[socket_type] = theme
        return self.links[socket_type]

    def pin(self, socket_type: str) -> int:
        if socket_type not in self.pins:
            color = socket_color(socket_type)
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNodeAttribute):
                    dpg.add_theme_color(dpg.mvNodeCol_Pin, color, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_color(dpg.mvNodeCol_PinHovered, color, category=dpg.mvThemeCat_Nodes)
            self.pins[socket_type] = theme
        return self.pins[socket_type]


def socket_color(socket_type: str) -> tuple[int, int, int]:
    """The colour of a socket type's pins and links."""
    return SOCKET_COLORS.get(socket_type, (200, 200, 200))
