"""More mask and image operations: a colour's pixels as a mask, a mask preview, and grey-scale
morphology (ComfyUI's ImageColorToMask, MaskPreview and Morphology)."""

from __future__ import annotations

import uuid

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.composite import color_to_mask
from nodeflow.image.morphology import OPERATIONS, morphology
from nodeflow.spec import IMAGE, MASK, Choice, Input, Int, Output, node


@node("ImageColorToMask", display="ImageColorToMask", category="mask",
      inputs=[Input("image", IMAGE),
              Int("color", 0, min=0, max=0xFFFFFF, step=1, tooltip="The colour as 0xRRGGBB (e.g. 16711680 is red)")],
      outputs=[Output(MASK)])
def image_color_to_mask(image: torch.Tensor, color: int):
    """1 where a pixel has exactly this colour (8 bits per channel), else 0."""
    if image.ndim != 4 or image.shape[-1] < 3:
        raise NodeInputError("image", f"expected RGB images (B, H, W, 3), got shape {tuple(image.shape)}")
    return (color_to_mask(image, color),)


@node("MaskPreview", display="MaskPreview", category="mask", output_node=True,
      inputs=[Input("mask", MASK)], outputs=[], idempotent=False)
def mask_preview(mask: torch.Tensor, ctx):
    """Show a mask as a grey image in the editor (temporary files, as PreviewImage)."""
    from nodeflow.image.files import save_png, tensor_to_pil

    images = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).movedim(1, -1).expand(-1, -1, -1, 3)  # (B, H, W, 3)
    folder = ctx.paths.preview_folder()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"mask_preview_{uuid.uuid4().hex[:8]}"
    saved = []
    for image in images:
        ctx.check_cancel()
        saved.append(save_png(tensor_to_pil(image), folder, name, None, compress_level=1))
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}


@node("Morphology", display="ImageMorphology", category="image/postprocessing",
      inputs=[Input("image", IMAGE), Choice("operation", list(OPERATIONS)),
              Int("kernel_size", 3, min=3, max=999, step=1)],
      outputs=[Output(IMAGE)])
def image_morphology(image: torch.Tensor, operation: str, kernel_size: int):
    """Erode, dilate, open, close, or take the gradient or a top / bottom hat of every channel with
    a kernel_size x kernel_size square (as kornia.morphology, which ComfyUI uses)."""
    return (morphology(image.movedim(-1, 1), operation, kernel_size).movedim(1, -1),)
