"""The canvas's zoom and panning: a view transform kept by the editor, not by the workflow.

dearpygui's node editor (imnodes) can neither zoom nor be panned from code, so the editor draws a
node whose workflow position is ``p`` at grid position ``p * zoom + offset`` (with fonts, widget
sizes and the node style scaled by ``zoom``) and turns positions read back from the canvas into
workflow units with the inverse. The workflow's positions stay unzoomed whatever the view.
``offset`` (grid pixels) is the view's own panning, on top of the editor's middle-drag panning,
which moves the grid as a whole and is not needed here.

Pure arithmetic: no dearpygui, tested without a display.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The zoom levels, smallest first (fonts are built once for each).
LEVELS = (0.1, 0.15, 0.25, 0.33, 0.5, 0.67, 0.75, 0.9, 1.0, 1.25, 1.5)
#: Zoom to fit leaves this much room (grid pixels) between the graph and the canvas's edges.
FIT_MARGIN = 24.0

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class View:
    zoom: float = 1.0
    offset: Point = (0.0, 0.0)

    def to_grid(self, point: Point) -> tuple[int, int]:
        """A workflow position's grid position (whole pixels, as the node editor keeps them)."""
        return (round(point[0] * self.zoom + self.offset[0]),
                round(point[1] * self.zoom + self.offset[1]))

    def to_model(self, grid: Point) -> Point:
        """A grid position in workflow units (the inverse of ``to_grid``, up to its rounding)."""
        return ((grid[0] - self.offset[0]) / self.zoom, (grid[1] - self.offset[1]) / self.zoom)

    def zoomed(self, zoom: float, anchor: Point) -> View:
        """This view at ``zoom``, with the workflow point now at grid position ``anchor`` staying there."""
        x, y = self.to_model(anchor)
        return View(zoom, (anchor[0] - x * zoom, anchor[1] - y * zoom))


def step(zoom: float, steps: int) -> float:
    """The level ``steps`` levels above (below, if negative) ``zoom``, clamped to the ends;
    a zoom between levels counts as the level below it."""
    index = max([i for i, level in enumerate(LEVELS) if level <= zoom + 1e-9], default=0)
    if steps < 0 and LEVELS[index] < zoom - 1e-9:  # between levels: the one below is one step down
        steps += 1
    return LEVELS[min(max(index + steps, 0), len(LEVELS) - 1)]


def scaled(value: float, zoom: float) -> int:
    """A size in pixels at ``zoom`` (at least 1)."""
    return max(1, round(value * zoom))


def bounds(boxes: list[Box]) -> Box:
    """The smallest box holding all ``boxes``."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def fit(box: Box, canvas: Box, margin: float = FIT_MARGIN, most: float = 1.0) -> View:
    """The view that shows ``box`` (workflow units) centred in ``canvas`` (grid pixels) with
    ``margin`` around it, at the largest level that fits and is at most ``most`` (the smallest
    level when none fits)."""
    width, height = box[2] - box[0], box[3] - box[1]
    room_width, room_height = canvas[2] - canvas[0] - 2 * margin, canvas[3] - canvas[1] - 2 * margin
    allowed = [level for level in LEVELS if level <= most + 1e-9] or [LEVELS[0]]
    fitting = [level for level in allowed if width * level <= room_width and height * level <= room_height]
    zoom = max(fitting, default=allowed[0])
    centre = ((canvas[0] + canvas[2]) / 2, (canvas[1] + canvas[3]) / 2)
    return View(zoom, (centre[0] - (box[0] + box[2]) / 2 * zoom, centre[1] - (box[1] + box[3]) / 2 * zoom))
