"""Guidance from a degraded self-attention: post-guidance functions that evaluate the model again.

Perturbed-Attention Guidance (Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with
Perturbed-Attention Guidance"): the positive conditioning is predicted a second time with the
self-attention of the U-Net's middle block replaced by the identity (each token attends only to
itself: the product is v), and the guided estimate moves away from that prediction:

    D = D_cfg + (D_cond - D_perturbed) * scale

As ComfyUI's PerturbedAttentionGuidance: the replacement sits on the whole middle block (every
transformer block of it: SDXL's middle has 10), scale 0 leaves CFG untouched without the extra
forward, and at cfg 1 the unconditional prediction is still skipped.

Self-Attention Guidance (Hong et al. 2023, "Improving Sample Quality of Diffusion Models Using
Self-Attention Guidance"): during the normal forward the self-attention probabilities of the
middle block's first transformer block are kept for the unconditional chunk. The keys that receive
more than the average attention (the column sums of softmax(q k^T / sqrt(d)), averaged over the
heads, above 1) make a mask on the latent grid; the unconditional estimate D_u is blurred there
(a 9 x 9 Gaussian of ``blur_sigma``, reflected borders), re-noised with the step's noise
(degraded + x - D_u), predicted again by the negative list, and

    D = D_cfg + (degraded - D_u(degraded + x - D_u)) * scale

As ComfyUI's SelfAttentionGuidance: the unconditional prediction is made even at cfg 1; the map is
the one of the latest forward that had an unconditional chunk (with area prompts: the last area
run), laid out on the latent's aspect ratio; latents with a side of 4 or less are left alone. The
map lives in the sampling run's ``run_state``, never in the model, so a cached MODEL never changes.
Where ComfyUI fails, this goes on: without a captured map (no negative prompt) SAG adds nothing,
a token count whose grid ComfyUI's search misses gets the nearest divisor, blur_sigma 0 is no blur;
scale 0 skips the extra forward (ComfyUI runs it and adds 0 times its result).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodeflow.models.attention import attention
from nodeflow.models.unet_patches import PatchCall
from nodeflow.sampling.model import DiffusionModel, GuidanceStep

MIDDLE = ("middle", 0)  # the U-Net's middle block, as ComfyUI names it
SAG_KERNEL = 9  # ComfyUI's Gaussian kernel size
SAG_THRESHOLD = 1.0  # keys attended more than the average (each query's probabilities sum to 1)
UNCOND = 1  # the chunk index of the negative list in a CFG forward (cond_or_uncond)


# ---------------------------------------------------------------- perturbed-attention guidance


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: PatchCall) -> torch.Tensor:
    """The self-attention product when every token attends only to itself: v (B, N, inner)."""
    return v


def perturbed_attention_guidance(model: DiffusionModel, scale: float) -> DiffusionModel:
    """A copy of ``model`` guided away from its prediction with an identity middle self-attention."""

    def post(x, sigma, guided, cond, uncond, cfg, step: GuidanceStep):
        if scale == 0:
            return guided
        perturbed = step.model.with_unet_patches(attn1_replace=((MIDDLE, identity_attention),))
        return guided + (cond - step.predict(0, x, perturbed)) * scale

    return model.clone_with(post_guidance=model.post_guidance + (post,))


# ---------------------------------------------------------------- self-attention guidance


def attention_with_probabilities(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v per head, written out so that the probabilities are kept:
    q (B, N, inner), k and v (B, T, inner) -> out (B, N, inner) in v's dtype and the
    probabilities (B, heads, N, T) in float32 (or the inputs' wider dtype)."""
    batch, tokens, inner = q.shape
    dim_head = inner // heads
    q, k, v = (t.reshape(batch, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))  # (B, heads, N|T, d)
    precision = torch.promote_types(q.dtype, torch.float32)  # half precision is computed in float32
    scores = q.to(precision) @ k.to(precision).transpose(-1, -2) / math.sqrt(dim_head)  # (B, heads, N, T)
    probabilities = scores.softmax(dim=-1)
    out = probabilities.to(v.dtype) @ v  # (B, heads, N, d)
    return out.transpose(1, 2).reshape(batch, tokens, inner), probabilities


def token_grid(tokens: int, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of a feature map of ``tokens`` positions for a latent of height x width: the
    divisor of ``tokens`` nearest round(sqrt(tokens * height / width)) as the rows, trying +i
    before -i (ComfyUI's search, which gives up after sqrt(tokens) / 2 tries; it continues here)."""
    start = round(math.sqrt(height / width * tokens))
    for offset in itertools.count():
        for rows in (start + offset, max(1, start - offset)):
            if tokens % rows == 0:
                return rows, tokens // rows
    raise AssertionError("unreachable: 1 divides every count")


def attention_mask(probabilities: torch.Tensor, height: int, width: int,
                   threshold: float = SAG_THRESHOLD) -> torch.Tensor:
    """Where the self-attention looks most: the keys whose attention, summed over the queries and
    averaged over the heads, exceeds ``threshold``, laid out as rows x cols (``token_grid``) and
    scaled to height x width (nearest). probabilities (b, heads, N, N) -> (b, 1, height, width)."""
    batch, _, _, keys = probabilities.shape
    attended = probabilities.mean(dim=1).sum(dim=1) > threshold  # (b, N)
    rows, cols = token_grid(keys, height, width)
    mask = attended.reshape(batch, 1, rows, cols).to(probabilities.dtype)
    return F.interpolate(mask, size=(height, width), mode="nearest")  # (b, 1, h, w)


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: int = SAG_KERNEL) -> torch.Tensor:
    """A kernel_size x kernel_size Gaussian blur of standard deviation ``sigma`` (pixels) per
    channel, the borders reflected: (B, C, h, w), each side above kernel_size // 2. Sigma 0 is
    the limit, no blur (ComfyUI's kernel is NaN there)."""
    if sigma <= 0:
        return image
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).to(image)  # (k,)
    channels = image.shape[1]
    kernel = (weights[:, None] * weights[None, :]).expand(channels, 1, kernel_size, kernel_size)
    padded = F.pad(image, [kernel_size // 2] * 4, mode="reflect")  # (B, C, h + k - 1, w + k - 1)
    return F.conv2d(padded, kernel, groups=channels)


def blur_where_attended(x0: torch.Tensor, probabilities: torch.Tensor, sigma: float,
                        threshold: float = SAG_THRESHOLD) -> torch.Tensor:
    """x0 (B, C, h, w) blurred where the attention mask is set, unchanged elsewhere."""
    mask = attention_mask(probabilities, *x0.shape[-2:], threshold).to(x0)  # (B, 1, h, w)
    return gaussian_blur(x0, sigma) * mask + x0 * (1 - mask)


@dataclass(frozen=True, eq=False)
class SelfAttentionGuidance:
    """One application of SAG: the capturing self-attention of the middle block's first
    transformer block (``capture``) and the post-guidance function (``post``), which meet in the
    run's state under this object's identity."""

    scale: float
    blur_sigma: float
    threshold: float = SAG_THRESHOLD

    def capture(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: PatchCall) -> torch.Tensor:
        """The self-attention product; in a forward with an unconditional chunk, its attention
        probabilities (b, heads, N, N) are kept in the run's state (the first such chunk's)."""
        chunks = tuple(call.extra.get("cond_or_uncond", ()))
        run_state = call.extra.get("run_state")
        if UNCOND not in chunks or run_state is None:
            return attention(q, k, v, call.heads)
        out, probabilities = attention_with_probabilities(q, k, v, call.heads)
        per_chunk = q.shape[0] // len(chunks)
        start = chunks.index(UNCOND) * per_chunk
        run_state[self] = probabilities[start:start + per_chunk]
        return out

    def post(self, x, sigma, guided, cond, uncond, cfg, step: GuidanceStep):
        probabilities = step.run_state.get(self)
        if self.scale == 0 or probabilities is None or min(guided.shape[2:]) <= SAG_KERNEL // 2:
            return guided  # nothing to add, no map captured (no negative prompt), or too small to pad
        degraded = blur_where_attended(uncond, probabilities, self.blur_sigma, self.threshold)
        again = step.predict(1, degraded + x - uncond)
        return guided + (degraded - again) * self.scale


def self_attention_guidance(model: DiffusionModel, scale: float, blur_sigma: float) -> DiffusionModel:
    """A copy of ``model`` with SAG: the capture on the middle block's first transformer block,
    the post-guidance function after the present ones, the unconditional estimate made at cfg 1."""
    sag = SelfAttentionGuidance(float(scale), float(blur_sigma))
    patched = model.with_unet_patches(attn1_replace=(((*MIDDLE, 0), sag.capture),))
    return patched.clone_with(post_guidance=model.post_guidance + (sag.post,), uncond_at_cfg1=True)
