"""unCLIP's ADM vector ``y``: noise-augmented CLIP image embeddings (Ramesh et al. 2022, "Hierarchical
Text-Conditional Image Generation with CLIP Latents", section 2.1; Stable unCLIP, SD2.1), which the
U-Net's ``label_emb`` adds to its timestep embedding.

One image embedding e (D,) at noise level k (0..999) with strength w becomes

    y = w [ sqrt(abar_k) e + sqrt(1 - abar_k) n  |  timestep_embedding(k, D) ]      (1, 2D)

with abar the cumulative product of the "squaredcos_cap_v2" betas (Nichol & Dhariwal 2021's
cosine schedule, beta_t = min(1 - abar(t+1)/abar(t), 0.999), abar(t) = cos((t/1000 + 0.008) /
1.008 pi/2)^2), n ~ N(0, I), and k = round(999 noise_augmentation) (Python's rounding). The
original CLIPEmbeddingNoiseAugmentation also standardises e by the image embeddings' data mean
and deviation around the noising; those statistics live in a separate file (karlo's
ViT-L-14_stats.th), not in the checkpoints, and ComfyUI never loads them (its buffers stay 0 and
1), so here, as there, the standardisation is the identity.

As ComfyUI's unclip_adm (comfy/model_base.py) and SD21UNCLIP.encode_adm:

- each unCLIP entry of a conditioning entry's ``unclip_conditioning`` list, and each image of its
  embeddings (B, D), gives one y, its noise n drawn from a CPU generator seeded with
  ``seed - 10`` (``seed``: the sampler's noise seed; torch's mapping of negative seeds), re-seeded
  for each image, so all share one draw;
- with more than one image in all, the y are summed, and the sum's embedding half is augmented
  again at level round(999 x 0.05) (SD2 unCLIP's merge augmentation), its noise the next draw of
  the same generator (what ComfyUI's unseeded ``randn_like`` draws on the CPU, its global
  generator having just been seeded; on a GPU ComfyUI draws it from the device's generator instead,
  which nothing reproduces), with that level's timestep embedding and no weight;
- a conditioning entry without unCLIP entries gets a zero vector.

SDXL models read unCLIP entries too (SDXL "revision", with clip_vision_g's 1280-wide embeddings): the
noised embedding half of the same vector, merged at level 0 (ComfyUI's sdxl_pooled), takes the place
of the pooled text embedding (``unclip_pooled``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nodeflow.errors import NodeflowError
from nodeflow.models.layers import timestep_embedding

NOISE_LEVELS = 1000  # the augmentation schedule's length (max_noise_level)
MAX_BETA = 0.999
COSINE_OFFSET = 0.008
SEED_OFFSET = 10  # the augmentation noise's seed is the sampler's seed minus this
MERGE_AUGMENTATION = 0.05  # SD2 unCLIP's noise augmentation of a sum of several images' vectors


def augmentation_schedule() -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(abar), sqrt(1 - abar)) of the squaredcos_cap_v2 schedule, (1000,) float32 each,
    computed in float64 (module docstring)."""
    def abar(t: float) -> float:
        return math.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - abar((i + 1) / NOISE_LEVELS) / abar(i / NOISE_LEVELS), MAX_BETA)
                          for i in range(NOISE_LEVELS)], dtype=torch.float64)
    cumulative = torch.cumprod(1 - betas, dim=0)
    return cumulative.sqrt().float(), (1 - cumulative).sqrt().float()


def noise_level(noise_augmentation: float) -> int:
    """The schedule step of a noise augmentation in 0..1: round(999 x), Python's rounding."""
    return round((NOISE_LEVELS - 1) * noise_augmentation)


def augment(embedding: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
    """[sqrt(abar_k) e + sqrt(1 - abar_k) n | timestep_embedding(k, D)]: (1, D) -> (1, 2 D)."""
    if not 0 <= level < NOISE_LEVELS:
        raise NodeflowError(f"unCLIP noise level {level} is outside 0..{NOISE_LEVELS - 1} "
                            "(noise_augmentation must lie in 0..1)")
    signal, spread = augmentation_schedule()
    noised = signal[level] * embedding + spread[level] * noise  # (1, D)
    return torch.cat([noised, timestep_embedding(torch.tensor([level]), embedding.shape[-1])], dim=1)


def noise_generator(seed: int) -> torch.Generator:
    """The CPU generator of the augmentation noise for the sampler seed ``seed``."""
    return torch.Generator().manual_seed(int(seed) - SEED_OFFSET)


def unclip_vector(unclip: Sequence[Mapping[str, Any]], seed: int,
                  merge_augmentation: float = MERGE_AUGMENTATION) -> torch.Tensor:
    """The ADM vector (1, 2 D) float32 of a conditioning entry's ``unclip_conditioning`` list:
    dicts of ``clip_vision_output`` (its ``image_embeds`` (B, D)), ``strength`` and
    ``noise_augmentation`` (module docstring)."""
    vectors, generator = [], None
    for item in unclip:
        level = noise_level(float(item["noise_augmentation"]))
        for embedding in item["clip_vision_output"].image_embeds.float().cpu():  # (D,)
            generator = noise_generator(seed)
            noise = torch.randn((1, embedding.shape[0]), generator=generator)  # (1, D)
            vectors.append(augment(embedding[None], level, noise) * float(item["strength"]))
    if not vectors:
        raise NodeflowError("the unCLIP conditioning holds no image embeddings")
    if len(vectors) == 1:
        return vectors[0]
    summed = torch.stack(vectors).sum(0)  # (1, 2 D)
    width = summed.shape[1] // 2
    noise = torch.randn((1, width), generator=generator)  # the generator's next draw (module docstring)
    return augment(summed[:, :width], noise_level(merge_augmentation), noise)


def encode_unclip_adm(options: Mapping[str, Any], channels: int, seed: int) -> torch.Tensor:
    """The ADM vector (1, channels) of a conditioning entry for an unCLIP model whose label_emb
    takes ``channels`` inputs: zeros without unCLIP entries, else ``unclip_vector``."""
    unclip = options.get("unclip_conditioning")
    if not unclip:
        return torch.zeros(1, channels)
    y = unclip_vector(unclip, seed)
    if y.shape[1] != channels:
        raise NodeflowError(f"the unCLIP image embeddings are {y.shape[1] // 2} wide, this model takes {channels // 2} "
                            f"(its ADM input is {channels}: 2 x 768 for ViT-L/14 models, 2 x 1024 for ViT-H/14): "
                            "encode the image with the CLIP vision tower made for this model")
    return y


def unclip_pooled(unclip: Sequence[Mapping[str, Any]], seed: int) -> torch.Tensor:
    """SDXL's stand-in for the pooled text embedding (1, D): the embedding half of the unCLIP
    vector, several images merged at noise level 0 (ComfyUI's SDXL merge augmentation)."""
    y = unclip_vector(unclip, seed, merge_augmentation=0.0)
    return y[:, :y.shape[1] // 2]
