"""Attention blocks of the Stable Diffusion U-Net (Rombach et al. 2022, section 3.3).

A ``SpatialTransformer`` treats the H*W positions of a feature map as tokens: GroupNorm, a
projection in (1x1 conv in SD1, linear in SD2/SDXL), ``depth`` transformer blocks (self-attention,
cross-attention on the text, GEGLU feed-forward; each pre-LayerNorm and residual), a projection
out, and a residual around the whole. Attention is softmax(q k^T / sqrt(d)) v (Vaswani et al.
2017) through torch's ``scaled_dot_product_attention`` (flash / memory-efficient kernels where
available). Attribute names are the checkpoint's (``transformer_blocks.0.attn1.to_q`` ...).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.layers import ContextBlock, normalization
from nodeflow.models.linear import Linear
from nodeflow.models.unet_patches import PatchCall


class CrossAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) of ``x`` over ``context`` (itself when None),
    through torch's scaled_dot_product_attention."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = Linear(query_dim, inner, bias=False)
        self.to_k = Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                value: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of ``x``'s queries over ``context``'s keys (x itself when None) and
        ``value``'s values (the context when None)."""
        context = x if context is None else context
        value = context if value is None else value
        return self.to_out(attention(self.to_q(x), self.to_k(context), self.to_v(value), self.heads))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head: q (B, N, inner), k and v (B, T, inner) -> (B, N, inner)."""
    batch, tokens, _ = q.shape
    q, k, v = (t.reshape(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)
               for t in (q, k, v))  # (B, heads, N|T, dim_head)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, dim_head)
    return out.transpose(1, 2).reshape(batch, tokens, -1)  # (B, N, inner)


class GEGLU(nn.Module):
    """GELU-gated linear unit (Shazeer 2020): a * GELU(b) from one projection (key ``proj``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x inner width (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention on the text, feed-forward; each pre-norm and residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, call: PatchCall | None = None) -> torch.Tensor:
        if call is None:
            x = x + self.attn1(self.norm1(x))
        else:
            x = x + self.patched_self_attention(self.norm1(x), call)
            for patch in call.patches.middle_patch:
                x = patch(x, call)
        if call is None or not call.patches.attn2_patch:
            x = x + self.attn2(self.norm2(x), context)
        else:
            x = x + self.patched_cross_attention(self.norm2(x), context, call)
        return x + self.ff(self.norm3(x))

    def patched_cross_attention(self, n: torch.Tensor, context: torch.Tensor, call: PatchCall) -> torch.Tensor:
        """The cross-attention of the normalised tokens ``n`` over ``context`` after the model's
        ``attn2_patch`` functions, in order, changed the tokens, keys' context and values' context."""
        attn = self.attn2
        call = replace(call, heads=attn.heads, dim_head=attn.to_q.out_features // attn.heads)
        value = context
        for patch in call.patches.attn2_patch:
            n, context, value = patch(n, context, value, call)
        return attn(n, context, value)

    def patched_self_attention(self, n: torch.Tensor, call: PatchCall) -> torch.Tensor:
        """The self-attention of the normalised tokens ``n`` with the model's patches
        (nodeflow.models.unet_patches): token patches, a replaced attention product, output patches."""
        patches, attn = call.patches, self.attn1
        call = replace(call, heads=attn.heads, dim_head=attn.to_q.out_features // attn.heads)
        context = value = n
        for patch in patches.attn1_patch:
            n, context, value = patch(n, context, value, call)
        product = patches.replacement(call.block, call.block_index)
        if product is None:
            out = attn(n, context, value)
        else:
            out = attn.to_out(product(attn.to_q(n), attn.to_k(context), attn.to_v(value), call))
        for patch in patches.attn1_output_patch:
            out = patch(out, call)
        return out


class SpatialTransformer(ContextBlock):
    """Transformer over the H*W positions of a feature map, conditioned on the text context
    (Rombach et al. 2022, section 3.3). ``proj_in``/``proj_out`` are 1x1 convolutions (SD1) or
    linear layers (SD2, SDXL)."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int,
                 use_linear: bool) -> None:
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = normalization(channels, eps=1e-6)
        self.proj_in = Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth))
        self.proj_out = Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, call: PatchCall | None = None) -> torch.Tensor:
        batch, _, height, width = x.shape
        h = self.norm(x)
        if not self.use_linear:
            h = self.proj_in(h)  # (B, inner, H, W)
        h = h.flatten(2).transpose(1, 2)  # (B, H*W, C)
        if self.use_linear:
            h = self.proj_in(h)
        for index, block in enumerate(self.transformer_blocks):
            h = block(h, context, None if call is None else replace(call, block_index=index))
        if self.use_linear:
            h = self.proj_out(h)
        h = h.transpose(1, 2).reshape(batch, -1, height, width)  # (B, inner|C, H, W)
        if not self.use_linear:
            h = self.proj_out(h)
        return x + h
