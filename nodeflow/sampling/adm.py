"""SDXL's ADM vector ``y``: the pooled text embedding and the image's size conditions, which the
U-Net's ``label_emb`` adds to its timestep embedding (Podell et al. 2023, "SDXL", section 2.2:
conditioning on the original size, the crop and, for the base model, the target size; the refiner
is conditioned on an aesthetic score instead of the target size).

Each number becomes a 256-wide sinusoidal embedding, [cos | sin] as for timesteps
(nodeflow.models.layers.timestep_embedding), concatenated after the pooled output:

    base     y = [pooled, e(height), e(width), e(crop_h), e(crop_w), e(target_height), e(target_width)]
    refiner  y = [pooled, e(height), e(width), e(crop_h), e(crop_w), e(aesthetic_score)]

Height comes before width, as in ComfyUI's SDXL / SDXLRefiner ``encode_adm`` and diffusers'
``time_ids``. The numbers come from the conditioning entry's options (CLIPTextEncodeSDXL and
CLIPTextEncodeSDXLRefiner set them); missing ones default as ComfyUI's sampler does: size = the
latent's size x 8, crop 0, target = size, aesthetic score 6 for the positive list and 2.5 for the
negative (shared/reference/comfyui-conventions.md, point 17).

SD2.1 unCLIP models take another vector: noise-augmented CLIP image embeddings
(nodeflow.sampling.unclip), a zero vector for entries without them (``SD2_UNCLIP``). On SDXL, an
entry's unCLIP images (unCLIPConditioning, "revision") replace its pooled text embedding, as in
ComfyUI's sdxl_pooled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from nodeflow.errors import NodeflowError
from nodeflow.models.layers import timestep_embedding
from nodeflow.sampling.unclip import encode_unclip_adm, unclip_pooled

SIZE_EMBEDDING = 256  # width of each number's embedding
SDXL = "sdxl"
SDXL_REFINER = "sdxl-refiner"
SD2_UNCLIP = "sd2-unclip"  # noise-augmented image embeddings (nodeflow.sampling.unclip)
#: how many numbers each kind embeds after the pooled output
SIZE_COUNTS = {SDXL: 6, SDXL_REFINER: 5}
POSITIVE_AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5


def embed_numbers(values: list[float]) -> torch.Tensor:
    """Each value as a 256-wide [cos | sin] embedding, side by side: (1, 256 n) float32."""
    embedded = timestep_embedding(torch.tensor(values, dtype=torch.float32), SIZE_EMBEDDING)  # (n, 256)
    return embedded.reshape(1, -1)


def size_values(kind: str, options: Mapping[str, Any], width: int, height: int,
                negative: bool = False) -> list[float]:
    """The numbers ``kind`` embeds for a conditioning entry, in order; ``width`` and ``height``
    (pixels: the latent's size x 8) stand in for sizes the options do not give."""
    w = options.get("width", width)
    h = options.get("height", height)
    crop_w, crop_h = options.get("crop_w", 0), options.get("crop_h", 0)
    if kind == SDXL:
        return [h, w, crop_h, crop_w, options.get("target_height", h), options.get("target_width", w)]
    if kind == SDXL_REFINER:
        default_score = NEGATIVE_AESTHETIC_SCORE if negative else POSITIVE_AESTHETIC_SCORE
        return [h, w, crop_h, crop_w, options.get("aesthetic_score", default_score)]
    raise ValueError(f"unknown ADM kind {kind!r} ({SDXL}, {SDXL_REFINER})")


def pooled_output(options: Mapping[str, Any]) -> torch.Tensor:
    """The entry's pooled text embedding (B, D) as float32; a clear error when there is none."""
    pooled = options.get("pooled_output")
    if pooled is None:
        raise NodeflowError("this model (SDXL) needs the pooled text embedding, and the conditioning has none "
                            "(\"pooled_output\"): make it with a CLIP text encode node and an SDXL text encoder")
    pooled = pooled.float()
    return pooled if pooled.ndim == 2 else pooled.reshape(1, -1)


def adm_kind(channels: int, pooled_width: int) -> str:
    """Which ADM vector a ``label_emb`` of ``channels`` inputs takes, from the shapes: the pooled
    width plus 6 x 256 (SDXL base: 1280 + 1536 = 2816) or plus 5 x 256 (refiner: 2560)."""
    for kind, count in SIZE_COUNTS.items():
        if pooled_width + count * SIZE_EMBEDDING == channels:
            return kind
    raise NodeflowError(f"this model's ADM input is {channels} wide, which fits neither SDXL ({pooled_width} + 6 x 256) "
                        f"nor the SDXL refiner ({pooled_width} + 5 x 256) with the {pooled_width}-wide pooled text "
                        "embedding given: is the text encoder made for this model?")


def encode_adm(options: Mapping[str, Any], width: int, height: int, *, channels: int,
               kind: str | None = None, negative: bool = False, seed: int = 0) -> torch.Tensor:
    """The ADM vector (B, channels) float32 of one conditioning entry for a model whose
    ``label_emb`` takes ``channels`` inputs. ``kind`` (SDXL or SDXL_REFINER) as the model says,
    or None to tell from the shapes (``adm_kind``). ``width`` x ``height``: the latent's size x 8;
    ``negative``: the entry belongs to the negative list (the refiner's default aesthetic score).
    SD2_UNCLIP models get the entry's unCLIP vector instead, its noise drawn from the sampler's
    ``seed`` (nodeflow.sampling.unclip)."""
    if kind == SD2_UNCLIP:
        return encode_unclip_adm(options, channels, seed)
    unclip = options.get("unclip_conditioning")  # SDXL revision: the image embedding replaces the pooled text
    pooled = unclip_pooled(unclip, seed) if unclip else pooled_output(options)  # (B, D)
    kind = kind or adm_kind(channels, pooled.shape[1])
    sizes = embed_numbers([float(v) for v in size_values(kind, options, width, height, negative)])
    y = torch.cat([pooled, sizes.to(pooled.device).repeat(pooled.shape[0], 1)], dim=1)  # (B, D + 256 n)
    if y.shape[1] != channels:
        raise NodeflowError(f"the ADM vector is {y.shape[1]} wide (a {pooled.shape[1]}-wide pooled text embedding and "
                            f"{SIZE_COUNTS[kind]} sizes), this model takes {channels}: is the text encoder made for it?")
    return y
