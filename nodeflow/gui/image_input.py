"""Load Image's file, outside the window: bringing a chosen file into the input folder, and
the small picture of it that the node shows.

A LoadImage node names a file in the input folders (``Paths.input_dirs``: the user's first,
then the examples shipped in assets/inputs), so a file chosen elsewhere is copied into the
user's input folder. A copy never replaces a different file: the name gets " (2)", " (3)", ...
until it is free or names a file with the same content, which is reused rather than copied
again. The copy is written to a temporary file and hard-linked to its name, which fails if
another program took the name meanwhile (as image saving does: nodeflow.image.files.claim, which
this module cannot import: the editor never imports torch, and that module does).

No dearpygui (nor torch) here: the node's widgets are image_picker.py's.
"""

from __future__ import annotations

import filecmp
import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from nodeflow.errors import ModelFileError
from nodeflow.image.limits import max_image_pixels

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 160  # the longer side of a node's picture, in pixels at 100% zoom
MAX_NAME_TRIES = 10000


class ThumbnailError(Exception):
    """Why a node shows no picture, in a few words for the node itself."""


def input_name(source: Path, paths) -> str | None:
    """``source``'s name in the input folders, if it is a file in one of them that LoadImage
    would find under that name (a user's file shadows an example of the same name)."""
    source = Path(source).resolve()
    for folder in paths.input_dirs():
        try:
            name = source.relative_to(folder.resolve()).as_posix()
        except ValueError:
            continue
        try:
            if paths.resolve_input(name).resolve() == source:
                return name
        except ModelFileError:
            pass
    return None


def bring_into_inputs(source: Path, paths) -> str:
    """The name LoadImage uses for ``source``: its own if it is in an input folder already,
    else the name of its copy in the user's input folder (see the module's docstring). Raises
    ``OSError`` (with the file's path) when it cannot be read or copied."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: not a file")
    inside = input_name(source, paths)
    if inside is not None:
        return inside
    folder = Path(paths.input_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for candidate in candidate_names(source.name):
        target = folder / candidate
        if target.exists():
            if _same_content(source, target):
                logger.info("%s is already in the input folder as %s", source, candidate)
                return candidate
            continue
        if _copy_new(source, target):
            logger.info("copied %s into the input folder as %s", source, candidate)
            return candidate
    raise OSError(f"no free name for {source.name} in {folder} after {MAX_NAME_TRIES} tries")


def candidate_names(name: str):
    """``name``, then ``stem (2).ext``, ``stem (3).ext``, ... (a leading "." is dropped: the
    input folders' listing hides such files)."""
    path = Path(name.lstrip(".") or "image")
    yield path.name
    for number in range(2, MAX_NAME_TRIES):
        yield f"{path.stem} ({number}){path.suffix}"


def _same_content(a: Path, b: Path) -> bool:
    try:
        return b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _copy_new(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` unless ``target`` exists by then; True if copied."""
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        shutil.copyfile(source, partial)
        try:
            os.link(partial, target)  # fails if the name was taken meanwhile: never overwrites
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: an exclusive create instead
            return _copy_exclusive(partial, target)
        return True
    finally:
        partial.unlink(missing_ok=True)


def _copy_exclusive(source: Path, target: Path) -> bool:
    try:
        with source.open("rb") as reading, target.open("xb") as writing:
            shutil.copyfileobj(reading, writing)
    except FileExistsError:
        return False
    return True


def pixel_limit() -> int:
    """The most pixels LoadImage decodes from a file (nodeflow.image.limits); a malformed setting
    refuses every picture rather than failing the window."""
    try:
        return max_image_pixels()
    except ModelFileError as error:
        raise ThumbnailError(str(error)) from None


def read_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The image at ``path`` (its first frame, EXIF orientation applied) fitted within
    ``size`` x ``size``: float32 RGBA (H, W, 4) in 0..1, as dearpygui's textures take it. Images
    over LoadImage's pixel limit are refused before decoding. Raises ``ThumbnailError``."""
    try:
        with Image.open(path) as opened:
            width, height = opened.size  # from the header: nothing is decoded yet
            if width * height > pixel_limit():
                raise ThumbnailError(f"too large ({width}x{height})")
            opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            picture = ImageOps.exif_transpose(opened)
            if picture.mode == "I":  # 16-bit greyscale: 8 bits, as LoadImage reads it
                picture = picture.point(lambda v: v * (1 / 255))
            picture = picture.convert("RGBA")
            picture.thumbnail((size, size), Image.Resampling.LANCZOS)
            return np.asarray(picture, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ThumbnailError("file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        logger.info("no thumbnail for %s: %s", path, error)
        raise ThumbnailError("not a readable image") from None


def thumbnail_for(name: str | None, paths, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The picture for a LoadImage value (a name in the input folders); ``ThumbnailError``
    says why there is none."""
    if not name:
        raise ThumbnailError("no image chosen")
    try:
        path = paths.resolve_input(str(name))
    except ModelFileError:
        raise ThumbnailError(f"{name}: not in the input folder") from None
    return read_thumbnail(path, size)
