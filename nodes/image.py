"""Image nodes: loading, resizing, padding for outpainting, batches, crops, blends, filters."""

from __future__ import annotations

import math

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.ops import (UPSCALE_METHODS, blur, image_to_nchw, match_channels, nchw_to_image, sharpen,
                              upscale)
from nodeflow.spec import IMAGE, MASK, Choice, Float, Input, Int, Output, node

MAX_RESOLUTION = 16384


def _input_hash(inputs: dict, paths) -> str:
    from nodeflow.image.files import file_hash

    return file_hash(paths.resolve_input(inputs["image"]))


@node("LoadImage", display="Load Image", category="image",
      inputs=[Choice("image", lambda paths: paths.list_inputs(), tooltip="A file in the input folder")],
      outputs=[Output(IMAGE), Output(MASK)], fingerprint=_input_hash)
def load_image(image: str, ctx):
    """Load an image (all frames of an animation as a batch); the mask is its transparency."""
    from nodeflow.image.files import load_image as read

    return read(ctx.paths.resolve_input(image))


@node("LoadImageMask", display="Load Image (as Mask)", category="mask",
      inputs=[Choice("image", lambda paths: paths.list_inputs()),
              Choice("channel", ["alpha", "red", "green", "blue"])],
      outputs=[Output(MASK)], fingerprint=_input_hash)
def load_image_mask(image: str, channel: str, ctx):
    """Load one channel of an image as a mask (alpha: 1 - alpha, as LoadImage's mask)."""
    import numpy as np
    from PIL import Image, ImageOps

    path = ctx.paths.resolve_input(image)
    try:
        opened = Image.open(path)
    except OSError as error:
        raise NodeInputError("image", f"{path}: not an image file ({error})") from None
    with opened:
        picture = ImageOps.exif_transpose(opened)
        if picture.mode == "I":  # 16-bit greyscale PNG
            picture = picture.point(lambda v: v * (1 / 255))
        picture = picture.convert("RGBA")  # a missing alpha reads as opaque: mask 0
        letter = {"alpha": "A", "red": "R", "green": "G", "blue": "B"}[channel]
        values = torch.from_numpy(np.asarray(picture.getchannel(letter), dtype=np.float32) / 255.0)  # (H, W)
    return ((1.0 - values if channel == "alpha" else values)[None],)


@node("ImageScale", display="Upscale Image", category="image/upscaling",
      inputs=[Input("image", IMAGE), Choice("upscale_method", list(UPSCALE_METHODS)),
              Int("width", 512, min=0, max=MAX_RESOLUTION), Int("height", 512, min=0, max=MAX_RESOLUTION),
              Choice("crop", ["disabled", "center"])],
      outputs=[Output(IMAGE)])
def image_scale(image: torch.Tensor, upscale_method: str, width: int, height: int, crop: str):
    """Resize images (0 for one side keeps the aspect ratio)."""
    if width == 0 and height == 0:
        return (image,)
    if width == 0:
        width = max(1, round(image.shape[2] * height / image.shape[1]))
    if height == 0:
        height = max(1, round(image.shape[1] * width / image.shape[2]))
    return (nchw_to_image(upscale(image_to_nchw(image), width, height, upscale_method, crop)),)


@node("ImageScaleBy", display="Upscale Image By", category="image/upscaling",
      inputs=[Input("image", IMAGE), Choice("upscale_method", list(UPSCALE_METHODS)),
              Float("scale_by", 1.0, min=0.01, max=8.0, step=0.01)],
      outputs=[Output(IMAGE)])
def image_scale_by(image: torch.Tensor, upscale_method: str, scale_by: float):
    """Resize images by a factor (to 1 pixel at least: 8 pixels by 0.01 is 1, not 0)."""
    width, height = max(1, round(image.shape[2] * scale_by)), max(1, round(image.shape[1] * scale_by))
    return (nchw_to_image(upscale(image_to_nchw(image), width, height, upscale_method)),)


@node("ImageScaleToTotalPixels", display="Scale Image to Total Pixels", category="image/upscaling",
      inputs=[Input("image", IMAGE), Choice("upscale_method", list(UPSCALE_METHODS)),
              Float("megapixels", 1.0, min=0.01, max=16.0, step=0.01),
              Int("resolution_steps", 1, min=1, max=256,
                  tooltip="Round width and height to multiples of this (8 or 64 suit a VAE)")],
      outputs=[Output(IMAGE)])
def image_scale_to_total_pixels(image: torch.Tensor, upscale_method: str, megapixels: float,
                                resolution_steps: int = 1):
    """Resize images to about ``megapixels`` * 2^20 pixels, keeping the aspect ratio; each side is
    rounded to a multiple of ``resolution_steps`` (at least one step)."""
    scale = math.sqrt(megapixels * 1024 * 1024 / (image.shape[1] * image.shape[2]))
    steps = resolution_steps
    width = max(steps, round(image.shape[2] * scale / steps) * steps)
    height = max(steps, round(image.shape[1] * scale / steps) * steps)
    return (nchw_to_image(upscale(image_to_nchw(image), width, height, upscale_method)),)


@node("ImagePadForOutpaint", display="Pad Image for Outpainting", category="image",
      inputs=[Input("image", IMAGE)] + [Int(side, 0, min=0, max=MAX_RESOLUTION, step=8)
                                        for side in ("left", "top", "right", "bottom")]
      + [Int("feathering", 40, min=0, max=MAX_RESOLUTION)],
      outputs=[Output(IMAGE), Output(MASK)])
def image_pad_for_outpaint(image: torch.Tensor, left: int, top: int, right: int, bottom: int, feathering: int):
    """Add grey borders to outpaint into. The mask is 1 on the new borders; with ``feathering`` the
    image fades in too: at distance d < feathering from a padded side (d = row or column index
    from the top/left, H - row or W - column from the bottom/right) the mask is
    ((feathering - d) / feathering)^2. Feathering applies only when 2 feathering < H and W."""
    batch, height, width, channels = image.shape
    padded = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5)
    padded[:, top:top + height, left:left + width] = image
    mask = torch.ones(padded.shape[1], padded.shape[2])  # (H', W')
    inner = torch.zeros(height, width)
    if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
        rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
        cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
        far_rows, far_cols = torch.full_like(rows, height), torch.full_like(cols, width)
        distance = torch.stack([rows if top else far_rows, height - rows if bottom else far_rows,
                                cols if left else far_cols, width - cols if right else far_cols]).amin(0)
        fade = ((feathering - distance) / feathering) ** 2
        inner = torch.where(distance < feathering, fade, torch.zeros_like(fade))
    mask[top:top + height, left:left + width] = inner
    return (padded, mask[None])


@node("ImageInvert", display="Invert Image", category="image",
      inputs=[Input("image", IMAGE)], outputs=[Output(IMAGE)])
def image_invert(image: torch.Tensor):
    """1 - image."""
    return (1.0 - image,)


@node("ImageBatch", display="Batch Images", category="image",
      inputs=[Input("image1", IMAGE), Input("image2", IMAGE)], outputs=[Output(IMAGE)])
def image_batch(image1: torch.Tensor, image2: torch.Tensor):
    """Join two batches (image2 resized to image1's size if they differ, bilinear, centre crop)."""
    image1, image2 = match_channels(image1, image2)
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = nchw_to_image(upscale(image_to_nchw(image2), image1.shape[2], image1.shape[1], "bilinear", "center"))
    return (torch.cat([image1, image2.to(image1)]),)


@node("ImageCrop", display="Image Crop", category="image/transform",
      inputs=[Input("image", IMAGE), Int("width", 512, min=1, max=MAX_RESOLUTION),
              Int("height", 512, min=1, max=MAX_RESOLUTION), Int("x", 0, min=0, max=MAX_RESOLUTION),
              Int("y", 0, min=0, max=MAX_RESOLUTION)],
      outputs=[Output(IMAGE)])
def image_crop(image: torch.Tensor, width: int, height: int, x: int, y: int):
    """Crop a rectangle (clipped to the image)."""
    x, y = min(x, image.shape[2] - 1), min(y, image.shape[1] - 1)
    return (image[:, y:y + height, x:x + width],)


BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


def _blend(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        g = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
        return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    return a - b  # difference (ComfyUI's signed difference, clamped below)


@node("ImageBlend", display="Image Blend", category="image/postprocessing",
      inputs=[Input("image1", IMAGE), Input("image2", IMAGE),
              Float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01), Choice("blend_mode", BLEND_MODES)],
      outputs=[Output(IMAGE)])
def image_blend(image1: torch.Tensor, image2: torch.Tensor, blend_factor: float, blend_mode: str):
    """Blend image2 over image1 with a blend mode, by blend_factor."""
    image1, image2 = match_channels(image1, image2)
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = nchw_to_image(upscale(image_to_nchw(image2), image1.shape[2], image1.shape[1], "bicubic", "center"))
    blended = _blend(image1, image2.to(image1), blend_mode)
    return ((image1 * (1 - blend_factor) + blended * blend_factor).clamp(0, 1),)


@node("ImageBlur", display="Image Blur", category="image/postprocessing",
      inputs=[Input("image", IMAGE), Int("blur_radius", 1, min=1, max=31), Float("sigma", 1.0, min=0.1, max=10.0, step=0.1)],
      outputs=[Output(IMAGE)])
def image_blur(image: torch.Tensor, blur_radius: int, sigma: float):
    """Gaussian blur."""
    _check_filter_fits(image, blur_radius, "blur_radius")
    return (blur(image, blur_radius, sigma),)


@node("ImageSharpen", display="Image Sharpen", category="image/postprocessing",
      inputs=[Input("image", IMAGE), Int("sharpen_radius", 1, min=1, max=31),
              Float("sigma", 1.0, min=0.1, max=10.0, step=0.01), Float("alpha", 1.0, min=0.0, max=5.0, step=0.01)],
      outputs=[Output(IMAGE)])
def image_sharpen(image: torch.Tensor, sharpen_radius: int, sigma: float, alpha: float):
    """Unsharp mask: image + 10 alpha (image - blur(image)), clamped (ComfyUI's scale)."""
    _check_filter_fits(image, sharpen_radius, "sharpen_radius")
    return (sharpen(image, sharpen_radius, sigma, alpha),)


def _check_filter_fits(image: torch.Tensor, radius: int, input_name: str) -> None:
    """The filters reflect the image at its borders: the radius must be below both sides."""
    height, width = image.shape[1:3]
    if radius >= min(width, height):
        raise NodeInputError(input_name, f"{radius} does not fit the {width}x{height} image "
                                         "(it must be smaller than both sides)")


@node("EmptyImage", display="Empty Image", category="image",
      inputs=[Int("width", 512, min=1, max=MAX_RESOLUTION), Int("height", 512, min=1, max=MAX_RESOLUTION),
              Int("batch_size", 1, min=1, max=4096), Int("color", 0, min=0, max=0xFFFFFF, tooltip="0xRRGGBB")],
      outputs=[Output(IMAGE)])
def empty_image(width: int, height: int, batch_size: int, color: int):
    """A batch of images filled with one color."""
    rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 255.0
    return (rgb.expand(batch_size, height, width, 3).clone(),)

