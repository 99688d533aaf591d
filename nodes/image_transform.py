"""Image transform nodes: size, flips and turns, stitching, fit-and-pad, scaling to a longest side,
batch utilities, noise and quantisation (ComfyUI's ids, inputs and behaviour; the maths is in
nodeflow.image.transform)."""

from __future__ import annotations

import logging

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image import transform
from nodeflow.image.ops import image_to_nchw, nchw_to_image, upscale
from nodeflow.spec import IMAGE, INT, Boolean, Choice, Float, Input, Int, Output, node

logger = logging.getLogger(__name__)

MAX_RESOLUTION = 16384


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    if image.ndim != 4 or image.shape[0] == 0:
        raise NodeInputError(name, f"expected images (B, H, W, C), got shape {tuple(image.shape)}")


@node("GetImageSize", display="Get Image Size", category="image",
      inputs=[Input("image", IMAGE)],
      outputs=[Output(INT, "width"), Output(INT, "height"), Output(INT, "batch_size")])
def get_image_size(image: torch.Tensor):
    """The width, height and batch size of the images."""
    _check_image(image)
    batch, height, width = image.shape[:3]
    return (int(width), int(height), int(batch))


@node("ImageFlip", display="Flip Image", category="image/transform",
      inputs=[Input("image", IMAGE), Choice("flip_method", list(transform.FLIP_METHODS))],
      outputs=[Output(IMAGE)])
def image_flip(image: torch.Tensor, flip_method: str):
    """Mirror images: x-axis flips top to bottom, y-axis left to right."""
    _check_image(image)
    return (transform.flip(image, flip_method),)


@node("ImageRotate", display="Rotate Image", category="image/transform",
      inputs=[Input("image", IMAGE), Choice("rotation", list(transform.ROTATIONS))],
      outputs=[Output(IMAGE)])
def image_rotate(image: torch.Tensor, rotation: str):
    """Rotate images clockwise by quarter turns."""
    _check_image(image)
    return (transform.rotate(image, rotation),)


@node("ImageFromBatch", display="Get Image from Batch", category="image/batch",
      inputs=[Input("image", IMAGE),
              Int("batch_index", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION,
                  tooltip="First image (0-based; negative counts from the end; clamped into the batch)"),
              Int("length", 1, min=1, max=4096)],
      outputs=[Output(IMAGE)])
def image_from_batch(image: torch.Tensor, batch_index: int, length: int):
    """Take ``length`` images from ``batch_index`` on (as ComfyUI: an index past the end takes the
    last image, a length past the end stops there)."""
    _check_image(image)
    batch = image.shape[0]
    start = batch_index + batch if batch_index < 0 else batch_index
    if not 0 <= start < batch:
        logger.warning("ImageFromBatch: batch_index %d is outside the batch of %d images; taking image %d "
                       "(ComfyUI clamps it the same way)", batch_index, batch, max(0, min(batch - 1, start)))
    start = max(0, min(batch - 1, start))
    return (image[start:start + min(batch - start, length)].clone(),)


def _check_fits(shape: tuple[int, ...], element_size: int, input_name: str) -> None:
    from nodeflow.runtime.devices import fits_in_memory

    needed = element_size
    for size in shape:
        needed *= size
    fits, free = fits_in_memory(needed)
    if not fits:
        raise NodeInputError(input_name, f"the result ({'x'.join(map(str, shape))}) needs {needed / 2**30:.1f} GiB; "
                                         f"{free / 2**30:.1f} GiB of memory are free")


@node("RepeatImageBatch", display="Repeat Image Batch", category="image/batch",
      inputs=[Input("image", IMAGE), Int("amount", 1, min=1, max=4096)], outputs=[Output(IMAGE)])
def repeat_image_batch(image: torch.Tensor, amount: int):
    """The whole batch ``amount`` times over (1 2 1 2 ... for a batch of two)."""
    _check_image(image)
    _check_fits((image.shape[0] * amount, *image.shape[1:]), image.element_size(), "amount")
    return (image.repeat(amount, 1, 1, 1),)


@node("RebatchImages", display="Rebatch Images", category="image/batch",
      inputs=[Input("images", IMAGE), Int("batch_size", 1, min=1, max=4096)], outputs=[Output(IMAGE)])
def rebatch_images(images: torch.Tensor, batch_size: int):
    """Regroup images into batches of ``batch_size``. ComfyUI hands each batch to the next nodes
    separately; nodeflow's links carry one value, so the batches are passed on joined: the same
    images in the same order (nodes that work image by image give ComfyUI's results)."""
    _check_image(images, "images")
    return (torch.cat(transform.rebatch_images([images], batch_size)),)


@node("ImageStitch", display="Stitch Images", category="image/transform",
      inputs=[Input("image1", IMAGE), Choice("direction", list(transform.STITCH_DIRECTIONS), "right"),
              Boolean("match_image_size", True), Int("spacing_width", 0, min=0, max=1024, step=2),
              Choice("spacing_color", list(transform.SPACING_COLORS), "white"),
              Input("image2", IMAGE, optional=True)],
      outputs=[Output(IMAGE)])
def image_stitch(image1: torch.Tensor, direction: str, match_image_size: bool, spacing_width: int,
                 spacing_color: str, image2: torch.Tensor | None = None):
    """Put image2 to the right of, below, left of or above image1, optionally resized to match
    and with a coloured strip between (image1 unchanged without image2)."""
    _check_image(image1, "image1")
    if image2 is None:
        return (image1,)
    _check_image(image2, "image2")
    return (transform.stitch(image1, image2, direction, match_image_size, spacing_width, spacing_color),)


@node("ResizeAndPadImage", display="Resize And Pad Image", category="image/transform",
      inputs=[Input("image", IMAGE), Int("target_width", 512, min=1, max=MAX_RESOLUTION),
              Int("target_height", 512, min=1, max=MAX_RESOLUTION), Choice("padding_color", ["white", "black"]),
              Choice("interpolation", list(transform.RESIZE_AND_PAD_METHODS))],
      outputs=[Output(IMAGE)])
def resize_and_pad_image(image: torch.Tensor, target_width: int, target_height: int, padding_color: str,
                         interpolation: str):
    """Fit images inside the target size keeping their aspect ratio, centred on white or black."""
    _check_image(image)
    _check_fits((image.shape[0], target_height, target_width, image.shape[-1]), 4, "target_width")
    return (transform.resize_and_pad(image, target_width, target_height, padding_color, interpolation),)


@node("ImageScaleToMaxDimension", display="Scale Image to Max Dimension", category="image/upscaling",
      inputs=[Input("image", IMAGE), Choice("upscale_method", list(transform.MAX_DIMENSION_METHODS)),
              Int("largest_size", 512, min=0, max=MAX_RESOLUTION)],
      outputs=[Output(IMAGE)])
def image_scale_to_max_dimension(image: torch.Tensor, upscale_method: str, largest_size: int):
    """Resize images so that their longer side is ``largest_size``, keeping the aspect ratio."""
    _check_image(image)
    width, height = transform.max_dimension_size(image.shape[2], image.shape[1], largest_size)
    if width < 1 or height < 1:
        raise NodeInputError("largest_size", f"{largest_size} makes the {image.shape[2]}x{image.shape[1]} "
                                             f"image {width}x{height} pixels (at least 1 each)")
    _check_fits((image.shape[0], height, width, image.shape[-1]), 4, "largest_size")
    return (nchw_to_image(upscale(image_to_nchw(image), width, height, upscale_method)),)


@node("ImageAddNoise", display="Add Noise to Image", category="image/filters",
      inputs=[Input("image", IMAGE),
              Int("seed", 0, seed=True, tooltip="The random seed used for creating the noise."),
              Float("strength", 0.5, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(IMAGE)])
def image_add_noise(image: torch.Tensor, seed: int, strength: float):
    """Add seeded Gaussian noise (ComfyUI's CPU draw: the same seed gives the same pixels), clamped to 0..1."""
    _check_image(image)
    return (transform.add_noise(image, seed, strength),)


@node("ImageQuantize", display="Image Quantize", category="image/postprocessing",
      inputs=[Input("image", IMAGE), Int("colors", 256, min=1, max=256),
              Choice("dither", list(transform.DITHER_METHODS))],
      outputs=[Output(IMAGE)])
def image_quantize(image: torch.Tensor, colors: int, dither: str):
    """Reduce images to at most ``colors`` colours (median-cut palette), with optional dithering."""
    _check_image(image)
    if image.shape[-1] < 3:
        raise NodeInputError("image", f"expected RGB images, got {image.shape[-1]} channel(s)")
    return (transform.quantize(image, colors, dither),)
