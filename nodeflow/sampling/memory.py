"""Will a sampling run fit in memory? An estimate checked before the first step, so that a latent
of 16384 x 16384 pixels or a batch of 64 large images is refused with the figures instead of
taking the machine's memory.

Per model call the U-Net holds its activations: about ``ACTIVATION_BYTES`` per latent pixel, per
image, per model channel (fp32; measured on the embedded model: 88-140, with scaled-dot-product
attention, whose memory grows linearly with the tokens), plus the sampler's own copies of the
latent (x, noise, the source, the denoised estimate, a multistep sampler's history). A U-Net
whose blocks stream from the CPU (``--vram low``) also holds its running block's weights on the
device during the call (``weights_bytes``; nodeflow.models.streaming.streamed_bytes): SDXL's
largest block (an output block) is 0.77 GiB in fp16, several images' activations on a small card.
"""

from __future__ import annotations

import logging

import torch

from nodeflow.errors import NodeflowError
from nodeflow.runtime.devices import available_memory

logger = logging.getLogger(__name__)

ACTIVATION_BYTES = 128
LATENT_COPIES = 12
GIB = 2**30


def images_per_call(unet_channels: int, dtype: torch.dtype, device: torch.device,
                    latent_shape: torch.Size, requested: int | None = None, *, weights_bytes: int = 0) -> int | None:
    """How many images one U-Net call may take here (None: no limit known), or a NodeflowError
    when even one call over the whole batch cannot fit (a guidance job covers the whole batch).
    ``weights_bytes``: weights a call brings onto the device beside what is there already (a
    streamed U-Net's largest block), which the free memory does not yet count."""
    free = available_memory(device)
    if free is None:
        return requested
    batch, channels, height, width = latent_shape
    latents = LATENT_COPIES * batch * channels * height * width * 4
    per_image = ACTIVATION_BYTES * height * width * unet_channels * dtype.itemsize // 4
    room = free - latents - weights_bytes
    if room < per_image * batch:
        raise NodeflowError(
            f"sampling {batch} image{'s' if batch > 1 else ''} of {width * 8}x{height * 8} needs about "
            f"{(latents + weights_bytes + per_image * batch) / GIB:.1f} GiB of {device.type} memory; "
            f"{free / GIB:.1f} GiB are free (make the image or the batch smaller)")
    fit = int(room // per_image)
    if requested is None or fit < requested:
        logger.debug("sampling: at most %d images per model call fit in %.1f GiB", fit, free / GIB)
        return fit if requested is None else min(requested, fit)
    return requested
