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
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, PngImagePlugin

from nodeflow.errors import ModelFileError

MAX_COUNTER = 99999


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(IMAGE (F, H, W, 3), MASK (F, H, W)): every frame of the same size as the first; the mask is
    1 - alpha (zeros 64 x 64 when the image has no alpha, as ComfyUI)."""
    try:
        opened = Image.open(path)
    except OSError as error:
        raise ModelFileError(f"{path}: not an image file ({error})") from None
    images, masks = [], []
    with opened:
        size = None
        for frame in ImageSequence.Iterator(opened):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))
            if "A" in frame.getbands():
                alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros(64, 64))
    if not images:
        raise ModelFileError(f"{path}: the image has no frames")
    mask_sizes = {tuple(m.shape) for m in masks}
    if len(mask_sizes) > 1:
        masks = [m if m.shape == images[0].shape[:2] else torch.zeros(images[0].shape[:2]) for m in masks]
    return torch.stack(images), torch.stack(masks)


def expand_prefix(prefix: str, workflow=None, now: datetime | None = None) -> str:
    """Replace ``%date:FORMAT%`` (yyyy, MM, dd, hh, mm, ss) and ``%NodeTypeOrTitle.input%``."""
    now = now or datetime.now()

    def replace(match: re.Match) -> str:
        token = match.group(1)
        if token.startswith("date:"):
            fmt = token[5:]
            for key, value in (("yyyy", f"{now.year:04}"), ("yy", f"{now.year % 100:02}"),
                               ("MM", f"{now.month:02}"), ("dd", f"{now.day:02}"),
                               ("hh", f"{now.hour:02}"), ("mm", f"{now.minute:02}"), ("ss", f"{now.second:02}")):
                fmt = fmt.replace(key, value)
            return fmt
        if "." in token and workflow is not None:
            name, _, field = token.partition(".")
            for node in workflow.nodes.values():
                if name in (node.type, node.title, node.id) and field in node.inputs:
                    return str(node.inputs[field])
        return match.group(0)

    return re.sub(r"%([^%]+)%", replace, prefix)


def check_prefix(prefix: str) -> None:
    """Raise ValueError for a prefix that could leave the output folder."""
    if not prefix.strip():
        raise ValueError("the filename prefix is empty")
    path = Path(prefix)
    if path.is_absolute() or prefix.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", prefix):
        raise ValueError(f"the filename prefix {prefix!r} must be relative to the output folder")
    if ".." in re.split(r"[/\\]", prefix):
        raise ValueError(f"the filename prefix {prefix!r} must not contain '..'")


def resolve_output_folder(output_dir: Path, prefix: str) -> tuple[Path, str]:
    """(folder, file name prefix) for ``prefix`` inside ``output_dir``; refuses escapes, symlinks
    included."""
    check_prefix(prefix)
    relative = Path(prefix)
    folder = (output_dir / relative).parent
    folder.mkdir(parents=True, exist_ok=True)
    root = output_dir.resolve()
    try:
        folder.resolve().relative_to(root)
    except ValueError:
        raise ValueError(f"the filename prefix {prefix!r} leads outside the output folder {output_dir}") from None
    return folder, relative.name


def next_counter(folder: Path, name: str) -> int:
    pattern = re.compile(re.escape(name) + r"_(\d{5,})_\.png$")
    found = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(found, default=0) + 1


def save_png(image: Image.Image, folder: Path, name: str, chunks: dict[str, str] | None = None) -> Path:
    """Write ``image`` as ``name_NNNNN_.png`` in ``folder`` without overwriting anything."""
    info = PngImagePlugin.PngInfo()
    for key, value in (chunks or {}).items():
        info.add_text(key, value)
    handle, temporary = tempfile.mkstemp(prefix=".saving-", suffix=".png", dir=folder)
    os.close(handle)
    try:
        image.save(temporary, pnginfo=info, compress_level=4)
        counter = next_counter(folder, name)
        while counter <= MAX_COUNTER:
            target = folder / f"{name}_{counter:05}_.png"
            try:
                os.link(temporary, target)  # atomic and exclusive: fails if the name exists
                return target
            except FileExistsError:
                counter += 1
        raise ValueError(f"no free file name left for prefix {name!r} in {folder}")
    finally:
        Path(temporary).unlink(missing_ok=True)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One IMAGE (H, W, C) in 0..1 -> 8-bit PIL image (truncating, as ComfyUI)."""
    array = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
