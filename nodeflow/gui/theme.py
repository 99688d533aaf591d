"""Colors of the editor: pins by socket type, nodes by state (running, cached, failed, muted)."""

from __future__ import annotations

import dearpygui.dearpygui as dpg

SOCKET_COLORS = {
    "MODEL": (180, 130, 230), "CLIP": (250, 210, 90), "VAE": (250, 110, 110),
    "CONDITIONING": (250, 160, 60), "LATENT": (250, 120, 200), "IMAGE": (100, 180, 250),
    "MASK": (120, 220, 150), "CONTROL_NET": (80, 200, 200), "INT": (160, 200, 120),
    "FLOAT": (170, 210, 170), "STRING": (160, 200, 180), "BOOLEAN": (200, 200, 120),
    "CHOICE": (180, 180, 180), "*": (220, 220, 220),
}
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
        self.hidden_window = self._hidden_window()

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

    def pin(self, socket_type: str) -> int:
        if socket_type not in self.pins:
            color = SOCKET_COLORS.get(socket_type, (200, 200, 200))
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNodeAttribute):
                    dpg.add_theme_color(dpg.mvNodeCol_Pin, color, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_color(dpg.mvNodeCol_PinHovered, color, category=dpg.mvThemeCat_Nodes)
            self.pins[socket_type] = theme
        return self.pins[socket_type]
