"""The grid images of a sweep: each job's first image in a cell, the axes labelled, and a legend.

One axis: a row. Two: X across, Y down. Three or more: one X/Y grid per combination of the others
(``grid_01.png``, ``grid_02.png``, ...; the legend names the Z values). A cell whose job has no
image (failed, cancelled, not yet run) is grey. Drawn with Pillow in DejaVu Sans (assets/fonts).
Everything comes from the manifest's data, so a grid can be drawn again from a manifest alone.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from nodeflow.runtime.paths import project_assets_dir

logger = logging.getLogger(__name__)

MAX_GRID_PIXELS = 2**27  # ~134 M pixels (400 MB of RGB): a larger grid is skipped with a warning
BACKGROUND, TEXT, MISSING = (255, 255, 255), (20, 20, 20), (200, 200, 200)
X_LABEL_LINES, Y_LABEL_LINES = 4, 6


def font_file(assets_dir: Path | None = None) -> Path:
    """The grids' font in ``assets_dir`` (a Paths' assets folder; default: the project's)."""
    return Path(assets_dir or project_assets_dir()) / "fonts" / "DejaVuSans.ttf"


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes: the legend on top, X labels above the columns, Y labels left of the
    rows, cells ``cell`` pixels large with ``gap`` between them."""

    columns: int
    rows: int
    cell: tuple[int, int]  # (width, height)
    left: int  # x of the first column
    top: int  # y of the first row
    gap: int
    pad: int
    line_height: int
    legend_height: int
    width: int
    height: int

    def cell_box(self, column: int, row: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a cell, x1/y1 excluded."""
        x0 = self.left + column * (self.cell[0] + self.gap)
        y0 = self.top + row * (self.cell[1] + self.gap)
        return x0, y0, x0 + self.cell[0], y0 + self.cell[1]


def draw_sweep_grids(data: dict[str, Any], folder: Path, font_path: Path | None = None) -> list[Path]:
    """The grids of a sweep manifest's ``data`` (see ``manifest``), written into ``folder``
    (replacing earlier grids of this sweep: a resumed sweep redraws them). Returns their paths;
    none when no job has an image yet."""
    axes = data["axes"]
    images: dict[tuple[int, ...], Path] = {}
    for job in data["jobs"]:
        if job["status"] != "done":
            continue
        for name in list(job.get("files", [])) + list(job.get("reused", [])):
            if Path(name).is_file():
                images[tuple(job["cell"])] = Path(name)
                break
    if not images or not axes:
        return []
    x_axis, y_axis, z_axes = axes[0], axes[1] if len(axes) > 1 else None, axes[2:]
    z_combinations = list(itertools.product(*(range(len(axis["labels"])) for axis in z_axes)))
    written = []
    for number, z_position in enumerate(z_combinations, start=1):
        cells = {}
        for cell, path in images.items():
            if tuple(cell[2:]) == z_position:
                cells[(cell[0], cell[1] if y_axis else 0)] = path
        legend = [f"X: {x_axis['title']}"] + ([f"Y: {y_axis['title']}"] if y_axis else [])
        legend += [f"Z: {axis['title']} = {axis['labels'][p]}" for axis, p in zip(z_axes, z_position)]
        name = "grid.png" if len(z_combinations) == 1 else f"grid_{number:02}.png"
        if not cells:
            continue
        grid = draw_grid(cells, list(x_axis["labels"]), list(y_axis["labels"]) if y_axis else None, legend,
                         font_path)
        if grid is None:
            continue
        written.append(save_atomically(grid, Path(folder) / name))
    return written


def draw_grid(cells: dict[tuple[int, int], Path], x_labels: list[str], y_labels: list[str] | None,
              legend: list[str], font_path: Path | None = None) -> Image.Image | None:
    """One grid: the image file of each (column, row) cell, labels for the columns (and rows)
    and legend lines. None (with a warning) when it would be larger than ``MAX_GRID_PIXELS``."""
    with Image.open(next(iter(cells.values()))) as first:
        cell_size = first.size
    font = ImageFont.truetype(str(font_path or font_file()), font_size(cell_size))
    layout = plan_layout(cell_size, x_labels, y_labels, legend, font)
    if layout.width * layout.height > MAX_GRID_PIXELS:
        logger.warning("the grid would be %d x %d pixels; not drawn", layout.width, layout.height)
        return None
    grid = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    y = layout.pad
    for line in legend:
        draw.text((layout.pad, y), fit_line(line, font, layout.width - 2 * layout.pad), fill=TEXT, font=font)
        y += layout.line_height
    for column, label in enumerate(x_labels):
        x0, y0, x1, _ = layout.cell_box(column, 0)
        lines = wrap(label, font, layout.cell[0], X_LABEL_LINES)
        top = y0 - layout.pad // 2 - len(lines) * layout.line_height
        for number, line in enumerate(lines):
            width = text_width(line, font)
            draw.text((x0 + (layout.cell[0] - width) // 2, top + number * layout.line_height), line, fill=TEXT,
                      font=font)
    for row, label in enumerate(y_labels or []):
        x0, y0, _, y1 = layout.cell_box(0, row)
        lines = wrap(label, font, x0 - 2 * layout.pad, Y_LABEL_LINES)
        top = y0 + (layout.cell[1] - len(lines) * layout.line_height) // 2
        for number, line in enumerate(lines):
            width = text_width(line, font)
            draw.text((x0 - layout.pad - width, top + number * layout.line_height), line, fill=TEXT, font=font)
    for row in range(layout.rows):
        for column in range(layout.columns):
            box = layout.cell_box(column, row)
            path = cells.get((column, row))
            if path is None:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=MISSING)
                continue
            grid.paste(fit_image(path, layout.cell), box[:2])
    return grid


def plan_layout(cell: tuple[int, int], x_labels: list[str], y_labels: list[str] | None, legend: list[str],
                font: ImageFont.FreeTypeFont) -> GridLayout:
    """The geometry of a grid (see ``GridLayout``)."""
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 2
    pad = max(6, font.size // 2)
    gap = max(2, min(cell) // 64)
    columns, rows = len(x_labels), len(y_labels) if y_labels else 1
    legend_height = pad + len(legend) * line_height + pad
    x_lines = max((len(wrap(label, font, cell[0], X_LABEL_LINES)) for label in x_labels), default=0)
    left = pad
    if y_labels:
        label_width = max(2 * cell[0], 160)
        widest = max(max(text_width(line, font) for line in wrap(label, font, label_width, Y_LABEL_LINES))
                     for label in y_labels)
        left = pad + widest + 2 * pad
    top = legend_height + x_lines * line_height + pad
    legend_width = max((text_width(line, font) for line in legend), default=0) + 2 * pad
    width = max(left + columns * cell[0] + (columns - 1) * gap + pad, min(legend_width, 4096))
    height = top + rows * cell[1] + (rows - 1) * gap + pad
    return GridLayout(columns, rows, cell, left, top, gap, pad, line_height, legend_height, width, height)


def font_size(cell: tuple[int, int]) -> int:
    """Labels grow with the images: 12 px for 64-pixel cells, 28 px from 280-pixel ones."""
    return max(12, min(28, min(cell) // 10))


def text_width(text: str, font: ImageFont.FreeTypeFont) -> int:
    return int(round(font.getlength(text)))


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """``text`` in lines no wider than ``width`` (at spaces; a long word is cut), at most
    ``max_lines`` (the last one ending in an ellipsis when cut short)."""
    width = max(width, 8)
    text = " ".join(text.split()) or "''"
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while text_width(word, font) > width and len(word) > 1:  # a word wider than the cell
            cut = len(word)
            while cut > 1 and text_width(word[:cut], font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = fit_line(lines[-1] + " …", font, width)
    return lines


def fit_line(line: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``line`` cut (with an ellipsis) to ``width`` pixels."""
    if text_width(line, font) <= width:
        return line
    while line and text_width(line + "…", font) > width:
        line = line[:-1]
    return line + "…"


def fit_image(path: Path, size: tuple[int, int]) -> Image.Image:
    """The image at ``path`` as RGB of exactly ``size``: scaled to fit (aspect kept), centred."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if image.size == size:
        return image
    image.thumbnail(size)
    canvas = Image.new("RGB", size, BACKGROUND)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return canvas


def save_atomically(image: Image.Image, path: Path) -> Path:
    """Write a PNG to a temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        image.save(temporary, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
