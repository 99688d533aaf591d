"""Image files: loading (EXIF orientation, alpha as mask, animation frames) and saving safely.

Saving never overwrites: names are ``PREFIX_00001_.png`` with the next free counter, written to a
temporary file in the same folder and then hard-linked to the final name, which fails if another
run took it first (then the next counter is tried). A prefix may contain sub-folders and
placeholders (``%date:yyyy-MM-dd%``, ``%KSampler.seed%``) but can never leave the output folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, PngImagePlugin

from nodeflow.errors import ModelFileError
from nodeflow.image.limits import MAX_PIXELS_VARIABLE, max_image_pixels

MAX_COUNTER = 99999
STALE_PARTIAL_S = 3600.0


def file_hash(path: Path) -> str:
    """SHA-256 of a file's content (hex): LoadImage's cache fingerprint."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(IMAGE (F, H, W, 3), MASK (F, H, W)) from an image file, EXIF orientation applied.

    Animated files (GIF, APNG, WebP, multi-page TIFF) give every frame of the first frame's size
    (others are skipped); an MPO (stereo JPEG) gives its first picture. The mask is 1 - alpha; an
    image without alpha gives a 64 x 64 zero mask per frame, as ComfyUI."""
    try:
        with Image.open(path) as opened:
            frames = [opened] if opened.format == "MPO" else ImageSequence.Iterator(opened)
            images, masks = _read_frames(frames)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ModelFileError(f"{path}: cannot read the image ({error})") from None
    if not images:
        raise ModelFileError(f"{path}: the image has no frames")
    if len({tuple(m.shape) for m in masks}) > 1:  # some frames with alpha, some without
        masks = [m if m.shape == images[0].shape[:2] else torch.zeros(images[0].shape[:2]) for m in masks]
    return torch.stack(images), torch.stack(masks)


def _read_frames(frames) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    images, masks, size = [], [], None
    budget = max_image_pixels()
    for frame in frames:
        width, height = frame.size  # from the header: nothing is decoded yet
        budget -= width * height
        if budget < 0:
            raise ValueError(f"{width}x{height} pixels{' per frame' if images else ''} is over the limit of "
                             f"{max_image_pixels():,} pixels; ${MAX_PIXELS_VARIABLE} raises it")
        frame = ImageOps.exif_transpose(frame)
        if frame.mode == "I":  # 16-bit greyscale: scale to 8 bits as ComfyUI
            frame = frame.point(lambda v: v * (1 / 255))
        rgb = frame.convert("RGB")
        size = size or rgb.size
        if rgb.size != size:
            continue
        images.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))  # (H, W, 3)
        if "A" in frame.getbands():
            alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
            masks.append(1.0 - torch.from_numpy(alpha))  # (H, W)
        else:
            masks.append(torch.zeros(64, 64))
    return images, masks


def expand_prefix(prefix: str, workflow=None, now: datetime | None = None,
                  size: tuple[int, int] | None = None) -> str:
    """Replace the placeholders ComfyUI users write in a filename prefix.

    ``%date:FORMAT%`` (yyyy, yy, MM, dd, hh, mm, ss), ``%year%`` ``%month%`` ``%day%`` ``%hour%``
    ``%minute%`` ``%second%``, ``%width%`` and ``%height%`` (``size`` of the image) and
    ``%NodeTypeOrTitleOrId.input%`` (a literal input of a node in ``workflow``). Anything else,
    ``%batch_num%`` included (see SaveImage), is left as it is."""
    now = now or datetime.now()
    parts = {"yyyy": f"{now.year:04}", "yy": f"{now.year % 100:02}", "MM": f"{now.month:02}",
             "dd": f"{now.day:02}", "hh": f"{now.hour:02}", "mm": f"{now.minute:02}", "ss": f"{now.second:02}"}
    simple = {"year": parts["yyyy"], "month": parts["MM"], "day": parts["dd"], "hour": parts["hh"],
              "minute": parts["mm"], "second": parts["ss"]}
    if size is not None:
        simple.update(width=str(size[0]), height=str(size[1]))

    def replace(match: re.Match) -> str:
        token = match.group(1)
        if token.startswith("date:"):
            return re.sub("|".join(parts), lambda m: parts[m.group(0)], token[5:])
        if token in simple:
            return simple[token]
        if "." in token and workflow is not None:
            name, _, field = token.partition(".")
            for node in workflow.nodes.values():
                if name in (node.type, node.title, node.id) and field in node.inputs:
                    return str(node.inputs[field])
        return match.group(0)

    return re.sub(r"%([^%/\\]+)%", replace, prefix)


def check_prefix(prefix: str) -> None:
    """Raise ValueError for a prefix that could leave the output folder, holds a NUL (after
    placeholders are filled in too) or names hidden files."""
    if not prefix.strip():
        raise ValueError("the filename prefix is empty")
    path = Path(prefix)
    if path.is_absolute() or prefix.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", prefix):
        raise ValueError(f"the filename prefix {prefix!r} must be relative to the output folder")
    if ".." in re.split(r"[/\\]", prefix):
        raise ValueError(f"the filename prefix {prefix!r} must not contain '..'")
    if "\0" in prefix:
        raise ValueError("the filename prefix must not contain a NUL character")
    if re.split(r"[/\\]", prefix)[-1].startswith("."):
        raise ValueError(f"the filename prefix {prefix!r} would make hidden files (a name starting with '.')")


def check_prefix_folder(output_dir: Path, prefix: str) -> None:
    """Raise ValueError when the prefix's sub-folder, as it exists now, leads out of
    ``output_dir`` (a symlink); creates nothing."""
    subfolder = prefix.replace("\\", "/").rpartition("/")[0]
    if subfolder:
        _check_inside(Path(output_dir), Path(output_dir) / subfolder, prefix)


def resolve_output_folder(output_dir: Path, prefix: str) -> tuple[Path, str]:
    """(folder, file name prefix) for ``prefix`` inside ``output_dir``; refuses escapes, symlinks
    included. Checked before any folder is created, and again after (a racing symlink)."""
    check_prefix(prefix)
    subfolder, _, name = prefix.replace("\\", "/").rpartition("/")  # "sub/" names files "_00001_.png"
    folder = output_dir / subfolder
    _check_inside(output_dir, folder, prefix)
    folder.mkdir(parents=True, exist_ok=True)
    _check_inside(output_dir, folder, prefix)
    return folder, name


def _check_inside(output_dir: Path, folder: Path, prefix: str) -> None:
    try:
        folder.resolve().relative_to(output_dir.resolve())
    except ValueError:
        raise ValueError(f"the filename prefix {prefix!r} leads outside the output folder {output_dir}") from None


def next_counter(folder: Path, name: str, suffix: str = ".png") -> int:
    """1 + the highest NNNNN of the ``name_NNNNN_<suffix>`` files in ``folder`` (1 if none)."""
    pattern = re.compile(re.escape(name) + r"_(\d{5,})_" + re.escape(suffix) + "$")
    found = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(found, default=0) + 1


def save_numbered(folder: Path, name: str, suffix: str, write: Callable[[Path], None]) -> Path:
    """Write a new ``name_NNNNN_<suffix>`` file in ``folder`` without overwriting anything:
    ``write(path)`` fills a temporary file there, which is then hard-linked to the first free name
    (``claim`` fails when the name exists, so a concurrent writer that took it makes us try the next)."""
    temporary = create_temporary(folder)
    try:
        write(temporary)
        counter = next_counter(folder, name, suffix)
        while counter <= MAX_COUNTER:
            target = folder / f"{name}_{counter:05}_{suffix}"
            try:
                claim(temporary, target)
                return target
            except FileExistsError:
                counter += 1
        raise ValueError(f"no free file name left for prefix {name!r} in {folder}")
    finally:
        temporary.unlink(missing_ok=True)


def save_png(image: Image.Image, folder: Path, name: str, chunks: dict[str, str] | None = None,
             compress_level: int = 4) -> Path:
    """Write ``image`` as ``name_NNNNN_.png`` in ``folder`` without overwriting anything (``save_numbered``)."""
    return save_numbered(folder, name, ".png", lambda path: image.save(
        path, format="PNG", pnginfo=png_info(chunks), compress_level=compress_level))


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One IMAGE (H, W, C) in 0..1 -> 8-bit PIL image (truncating, as ComfyUI)."""
    array = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def png_info(chunks: dict[str, str] | None) -> PngImagePlugin.PngInfo:
    """PIL's PngInfo holding ``chunks`` as text chunks (iTXt when not Latin-1, as PIL decides)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (chunks or {}).items():
        info.add_text(key, value)
    return info


def create_temporary(folder: Path) -> Path:
    """A new empty hidden file in ``folder``, with the usual permissions (umask applies, unlike
    ``tempfile.mkstemp``'s 0600). Partial files a killed save left there are removed first once
    they are ``STALE_PARTIAL_S`` old (a live save finishes long before)."""
    remove_stale_partials(folder)
    while True:
        path = folder / f".saving-{secrets.token_hex(8)}.png"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue


def remove_stale_partials(folder: Path, now: float | None = None) -> None:
    """Delete ``.saving-*.png`` files (ours, see ``create_temporary``) older than STALE_PARTIAL_S."""
    limit = (now or time.time()) - STALE_PARTIAL_S
    for partial in folder.glob(".saving-*.png"):
        try:
            if not partial.is_symlink() and partial.lstat().st_mtime < limit:
                partial.unlink()
        except FileNotFoundError:  # a concurrent save removed it
            pass


def claim(temporary: Path, target: Path) -> None:
    """Give ``target`` the content of ``temporary``; FileExistsError when ``target`` exists.

    A hard link is atomic and exclusive; where the file system has none (FAT, some network
    shares) the target is created exclusively (O_EXCL) and the bytes are copied."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise
    except OSError:
        with open(temporary, "rb") as reading, open(target, "xb") as writing:  # "x": exclusive creation
            shutil.copyfileobj(reading, writing)


def save_png_with_metadata(image: Image.Image, path: str | os.PathLike, chunks: dict[str, str] | None,
                           *, compress_level: int = 4) -> Path:
    """Write ``image`` as a PNG at ``path`` with ``chunks``; never overwrites, never half-written
    (a temporary file in the same folder, then ``claim``). Raises ``FileExistsError`` when
    ``path`` exists (callers pick the next free name). Returns ``Path(path)``."""
    path = Path(path)
    temporary = create_temporary(path.parent)
    try:
        image.save(temporary, format="PNG", pnginfo=png_info(chunks), compress_level=compress_level)
        claim(temporary, path)
        return path
    finally:
        temporary.unlink(missing_ok=True)
