"""InpaintModelConditioning: inpainting through the conditioning (ComfyUI's node).

The masked image's latent and the mask travel in every conditioning entry's options
(``concat_latent_image``, ``concat_mask``); the sampler gives them to an inpainting model (9 input
channels) as its extra channels, [mask, masked latent] (nodeflow.sampling.conditioning.
inpaint_concat), and ignores them for other models. The latent output is the unmasked image's,
so a normal model can inpaint with it through the noise mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodeflow.errors import NodeInputError
from nodeflow.sampling.conditioning import with_options
from nodeflow.spec import CONDITIONING, IMAGE, LATENT, MASK, VAE, Boolean, Input, Output, node

GRID = 8  # ComfyUI crops the pixels to multiples of 8 here, whatever the VAE


@node("InpaintModelConditioning", display="InpaintModelConditioning", category="conditioning/inpaint",
      inputs=[Input("positive", CONDITIONING), Input("negative", CONDITIONING), Input("vae", VAE),
              Input("pixels", IMAGE), Input("mask", MASK),
              Boolean("noise_mask", True, tooltip="Add a noise mask to the latent so sampling will only happen "
                                                  "within the mask. Might improve results or completely break "
                                                  "things depending on the model.")],
      outputs=[Output(CONDITIONING, "positive"), Output(CONDITIONING, "negative"), Output(LATENT, "latent")])
def inpaint_model_conditioning(positive: list, negative: list, vae, pixels: torch.Tensor, mask: torch.Tensor,
                               noise_mask: bool):
    """Prepare inpainting: both conditionings carry the image with the masked area grey, encoded,
    and the mask (for inpainting models); the latent is the whole image's, with the mask as its
    noise mask when ``noise_mask`` is on.

    As ComfyUI: the mask is resized (bilinear) to the image, image and mask are centre-cropped to
    multiples of 8, pixels where the rounded mask is 1 become 0.5 before encoding; the mask given
    on is the resized, cropped one, not rounded (the sampler rounds it for the model).
    """
    if pixels.ndim != 4 or pixels.shape[1] < GRID or pixels.shape[2] < GRID:
        raise NodeInputError("pixels", f"expected images (B, H, W, C) of at least {GRID}x{GRID}, "
                                       f"got {tuple(pixels.shape)}")
    if mask.ndim not in (2, 3):
        raise NodeInputError("mask", f"expected a mask (B, H, W), got shape {tuple(mask.shape)}")
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=tuple(pixels.shape[1:3]), mode="bilinear")  # (B', 1, H, W)
    height, width = pixels.shape[1] // GRID * GRID, pixels.shape[2] // GRID * GRID
    top, left = (pixels.shape[1] % GRID) // 2, (pixels.shape[2] % GRID) // 2
    cropped = pixels[:, top:top + height, left:left + width]
    mask = mask[:, :, top:top + height, left:left + width]
    keep = (1.0 - mask.round()).movedim(1, -1)  # (B', H, W, 1): 0 where inpainted
    grey = torch.cat([(cropped[..., :3] - 0.5) * keep + 0.5, cropped[..., 3:]], dim=-1)  # (B, H, W, C)
    concat_latent = vae.encode(grey)
    latent = {"samples": vae.encode(pixels)}
    if noise_mask:
        latent["noise_mask"] = mask
    options = {"concat_latent_image": concat_latent, "concat_mask": mask}
    return (with_options(positive, **options), with_options(negative, **options), latent)
